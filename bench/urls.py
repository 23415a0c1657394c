"""The example project's URLs plus the REST baseline of item 6 (mounted only for the bench's worker)."""

from django.urls import path

from example_project.urls import urlpatterns as example_urlpatterns

from .views import BaselineMessageCreateView

urlpatterns = [
    path("bench/sessions/<uuid:session_uuid>/messages/", BaselineMessageCreateView.as_view(), name="bench-messages"),
    *example_urlpatterns,
]

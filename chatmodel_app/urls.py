"""The app's URLs: ``path("", include("chatmodel_app.urls"))`` (or any prefix) in the host's urlconf."""

from django.urls import include, path

urlpatterns = [
    # REST API under api/; reverse as "chatmodel_api:<name>".
    path("", include("chatmodel_app.api.urls")),
]

"""The test suite's URLs: the admin and the app, mounted as the docs tell a host to (the example site has its own)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chatmodel_app.urls")),
]

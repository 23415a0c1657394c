from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("chat/runs/<uuid:session_uuid>/", views.session_runs, name="chat-runs"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("chatmodel_app.urls")),
]

# Static files from Django itself, when DEBUG is on (it is in development and in the browser tests).
urlpatterns += staticfiles_urlpatterns()

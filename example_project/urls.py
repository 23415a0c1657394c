from django.apps import apps
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from . import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's).
    path("favicon.ico", RedirectView.as_view(url=static("example/favicon.svg"))),
    path("chat/runs/<uuid:session_uuid>/", views.session_runs, name="chat-runs"),
    # The React page (example_project/frontend, built by `make frontend`): useChat over the AI SDK endpoint.
    path("react/", views.react_page, name="react"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("chatmodel_app.urls")),
    # The AI SDK UI message stream (useChat): /api/ai-sdk/<chat model name>/chat (docs/ai-sdk.md).
    path("api/ai-sdk/", include("chatmodel_app.ai_sdk.urls")),
    # The OpenAI-compatible API (the openai SDKs, Open WebUI): /v1/responses, /v1/chat/completions (docs/openai.md).
    path("v1/", include("chatmodel_app.openai_compat.urls")),
]

if apps.is_installed("drf_spectacular_sidecar"):
    # A readable page of the API (Swagger UI, from local static files), public like the schema it shows.
    urlpatterns.append(
        path(
            "api/docs/",
            SpectacularSwaggerView.as_view(url_name="chatmodel_api:schema", permission_classes=[AllowAny]),
            name="api-docs",
        )
    )

# Static files from Django itself, when DEBUG is on (it is in development and in the browser tests).
urlpatterns += staticfiles_urlpatterns()

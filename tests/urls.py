"""The test suite's URLs: the admin and the app, mounted as the docs tell a host to (the example site has its own)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chatmodel_app.urls")),
    # The AI SDK UI message stream (useChat): /api/ai-sdk/<chat model name>/chat (docs/ai-sdk.md).
    path("api/ai-sdk/", include("chatmodel_app.ai_sdk.urls")),
    # The OpenAI-compatible API (the openai SDKs, Open WebUI): /v1/responses, /v1/chat/completions (docs/openai.md).
    path("v1/", include("chatmodel_app.openai_compat.urls")),
]

"""The AI SDK door's URLs: ``path("api/ai-sdk/", include("chatmodel_app.ai_sdk.urls"))`` in the host's urlconf.

``DefaultChatTransport({api: "<prefix><name>/chat"})`` posts to the first and resumes at ``{api}/{id}/stream``.
A trailing slash is accepted on each. Reverse as ``chatmodel_ai_sdk:<name>``.
"""

from django.urls import re_path

from . import views

app_name = "chatmodel_ai_sdk"

urlpatterns = [
    re_path(r"^(?P<name>[^/]+)/chat/?$", views.ChatView.as_view(), name="chat"),
    re_path(r"^(?P<name>[^/]+)/chat/(?P<chat_id>[^/]+)/stream/?$", views.ChatStreamView.as_view(), name="stream"),
    re_path(r"^(?P<name>[^/]+)/chat/(?P<chat_id>[^/]+)/messages/?$", views.ChatMessagesView.as_view(), name="messages"),
]

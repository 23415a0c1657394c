"""The OpenAI-compatible API: ``path("v1/", include("chatmodel_app.openai_compat.urls"))`` in the host's urlconf.

Paths have no trailing slash, as OpenAI's SDKs call them (one is accepted too); reverse as "chatmodel_openai:<name>".
"""

from django.urls import re_path

from . import views

app_name = "chatmodel_openai"

_ID = r"[^/]+"

urlpatterns = [
    re_path(r"^models/?$", views.ModelListView.as_view(), name="models"),
    re_path(rf"^models/(?P<model>{_ID})/?$", views.ModelDetailView.as_view(), name="model"),
    re_path(r"^conversations/?$", views.ConversationListView.as_view(), name="conversations"),
    re_path(
        rf"^conversations/(?P<conversation_id>{_ID})/?$", views.ConversationDetailView.as_view(), name="conversation"
    ),
    re_path(
        rf"^conversations/(?P<conversation_id>{_ID})/items/?$", views.ConversationItemsView.as_view(), name="items"
    ),
    re_path(
        rf"^conversations/(?P<conversation_id>{_ID})/items/(?P<item_id>{_ID})/?$",
        views.ConversationItemView.as_view(),
        name="item",
    ),
    re_path(r"^responses/?$", views.ResponseCreateView.as_view(), name="responses"),
    re_path(rf"^responses/(?P<response_id>{_ID})/?$", views.ResponseDetailView.as_view(), name="response"),
    re_path(rf"^responses/(?P<response_id>{_ID})/cancel/?$", views.ResponseCancelView.as_view(), name="cancel"),
    re_path(
        rf"^responses/(?P<response_id>{_ID})/input_items/?$",
        views.ResponseInputItemsView.as_view(),
        name="input-items",
    ),
    re_path(r"^chat/completions/?$", views.ChatCompletionView.as_view(), name="chat-completions"),
]

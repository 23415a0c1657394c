"""The API's URLs, under ``api/`` of wherever the host includes ``chatmodel_app.urls``."""

from django.urls import path

from . import branches, conversations, views

app_name = "chatmodel_api"

urlpatterns = [
    path("api/chat-models/", views.ChatModelListView.as_view(), name="chat-models"),
    path("api/chat-models/<str:name>/config/", views.ChatModelConfigView.as_view(), name="chat-model-config"),
    path("api/chat-models/<str:name>/sessions/", views.SessionCreateView.as_view(), name="session-create"),
    path("api/sessions/", views.SessionListView.as_view(), name="sessions"),
    path("api/sessions/<str:uuid>/", conversations.ConversationDetailView.as_view(), name="session"),
    path("api/sessions/<str:uuid>/messages/", views.MessagesView.as_view(), name="messages"),
    path(
        "api/sessions/<str:uuid>/messages/<str:seq>/feedback/",
        conversations.FeedbackView.as_view(),
        name="message-feedback",
    ),
    path("api/sessions/<str:uuid>/run/", views.RunView.as_view(), name="run"),
    # Branches (api/branches.py).
    path("api/sessions/<str:uuid>/path/", branches.PathView.as_view(), name="session-path"),
    path("api/sessions/<str:uuid>/regenerate/", branches.RegenerateView.as_view(), name="regenerate"),
    path("api/sessions/<str:uuid>/messages/<str:seq>/edit/", branches.EditView.as_view(), name="message-edit"),
    path("api/sessions/<str:uuid>/messages/<str:seq>/switch/", branches.SwitchView.as_view(), name="message-switch"),
    path("api/sessions/<str:uuid>/fork/", branches.ForkView.as_view(), name="session-fork"),
    path("api/sessions/<str:uuid>/cancel/", views.CancelView.as_view(), name="cancel"),
    path("api/sessions/<str:uuid>/events/", views.RunEventsView.as_view(), name="events"),
    path("api/schema/", views.SchemaView.as_view(), name="schema"),
]

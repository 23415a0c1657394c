"""The API's URLs, under ``api/`` of wherever the host includes ``chatmodel_app.urls``."""

from django.urls import path

from . import views

app_name = "chatmodel_api"

urlpatterns = [
    path("api/chat-models/", views.ChatModelListView.as_view(), name="chat-models"),
    path("api/chat-models/<str:name>/config/", views.ChatModelConfigView.as_view(), name="chat-model-config"),
    path("api/chat-models/<str:name>/sessions/", views.SessionCreateView.as_view(), name="session-create"),
    path("api/sessions/", views.SessionListView.as_view(), name="sessions"),
    path("api/sessions/<str:uuid>/", views.SessionDetailView.as_view(), name="session"),
    path("api/sessions/<str:uuid>/messages/", views.MessagesView.as_view(), name="messages"),
    path("api/sessions/<str:uuid>/run/", views.RunView.as_view(), name="run"),
    path("api/sessions/<str:uuid>/cancel/", views.CancelView.as_view(), name="cancel"),
    path("api/sessions/<str:uuid>/events/", views.RunEventsView.as_view(), name="events"),
    path("api/schema/", views.SchemaView.as_view(), name="schema"),
]

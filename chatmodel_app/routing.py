"""Websocket routes: include ``websocket_urlpatterns`` in the host's ASGI ``URLRouter``."""

from django.urls import path

from .consumers import SessionConsumer

websocket_urlpatterns = [
    path("ws/chatmodel/sessions/<uuid:session_uuid>/", SessionConsumer.as_asgi(), name="chatmodel-session-ws"),
]

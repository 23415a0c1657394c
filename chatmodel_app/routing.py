"""Websocket routes: include ``websocket_urlpatterns`` in the host's ASGI ``URLRouter``."""

from django.urls import path

from .consumers import SessionConsumer

websocket_urlpatterns = [
    # ``str``, not ``uuid``: a path with a malformed uuid reaches the consumer, which refuses it as unknown
    # (close 4404), instead of failing the handshake with "no route found".
    path("ws/chatmodel/sessions/<str:session_uuid>/", SessionConsumer.as_asgi(), name="chatmodel-session-ws"),
]

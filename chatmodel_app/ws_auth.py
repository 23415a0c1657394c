"""Websocket handshake authentication: the Django session cookie (browsers) or ``Authorization: Token <key>``.

Browsers cannot set headers on a websocket, so they are known by their session cookie
(Channels' ``AuthMiddlewareStack``). Other clients send the DRF token they use for the
REST API on the handshake. A token that is given but wrong never falls back to the
cookie: the consumer refuses the socket (close code 4401).
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.apps import apps
from django.contrib.auth.models import AnonymousUser

# Set in the scope when an Authorization header was sent but named no active user.
AUTH_FAILED_KEY = "chatmodel_auth_failed"
_KEYWORD = b"token"


def _authorization(scope: dict[str, Any]) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            return value
    return None


@database_sync_to_async
def _token_user(key: str) -> Any:
    if not apps.is_installed("rest_framework.authtoken"):
        return None
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` from an ``Authorization: Token <key>`` handshake header (DRF authtoken)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        header = _authorization(scope)
        if header is None:
            return await super().__call__(scope, receive, send)
        scope = dict(scope)
        parts = header.split()
        user = None
        if len(parts) == 2 and parts[0].lower() == _KEYWORD:
            try:
                user = await _token_user(parts[1].decode("ascii"))
            except UnicodeDecodeError:
                user = None
        scope["user"] = user or AnonymousUser()
        scope[AUTH_FAILED_KEY] = user is None
        return await self.inner(scope, receive, send)


def ChatModelAuthMiddlewareStack(inner: Any) -> Any:
    """Session-cookie auth (Channels) with token auth on top: wrap the websocket router in it."""
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))

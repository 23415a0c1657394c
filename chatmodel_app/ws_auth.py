"""Websocket handshake checks: where the page came from (``SameOriginValidator``), then who is calling.

Browsers cannot set headers on a websocket, so they are known by their session cookie
(Channels' ``AuthMiddlewareStack``). Other clients send the DRF token they use for the
REST API on the handshake. A token that is given but wrong never falls back to the
cookie: the consumer refuses the socket (close code 4401). An open socket stops when its login
ends: the token is deleted, the browser session logged out, flushed or expired, the password
changed, or the user deactivated (``login_still_valid``, which the consumer asks every few seconds).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack, get_user
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host

# Set in the scope when an Authorization header was sent but named no active user.
AUTH_FAILED_KEY = "chatmodel_auth_failed"
# Set in the scope to the token a socket was authenticated with.
TOKEN_KEY = "chatmodel_token"
_KEYWORD = b"token"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

logger = logging.getLogger("chatmodel_app")


def _header(scope: dict[str, Any], wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == wanted:
            return value
    return None


def _authorization(scope: dict[str, Any]) -> bytes | None:
    return _header(scope, b"authorization")


# --- origin -----------------------------------------------------------------------------------------


def _origin_parts(origin: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of an origin, the port filled in from the scheme; None if it is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _is_secure(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    # Behind a proxy that ends TLS, as Django's request.is_secure() reads it.
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        wanted = name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")
        value = _header(scope, wanted)
        return value is not None and value.decode("latin-1").split(",", 1)[0].strip() == secure_value
    return False


def _own_origin(scope: dict[str, Any]) -> tuple[str, str, int | None] | None:
    """The site's own origin as the handshake names it (scheme, Host, port), if the Host is an allowed one."""
    host = _header(scope, b"x-forwarded-host") if settings.USE_X_FORWARDED_HOST else None
    host = host or _header(scope, b"host")
    if host is None:
        return None
    host_text = host.decode("latin-1").split(",")[-1].strip()
    domain, _port = split_domain_port(host_text)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's request.get_host()
    if not domain or not validate_host(domain, allowed):
        return None
    return _origin_parts(f"{'https' if _is_secure(scope) else 'http'}://{host_text}")


def _trusted(origin: tuple[str, str, int | None]) -> bool:
    """Whether ``CSRF_TRUSTED_ORIGINS`` names the origin (``https://*.example.com`` covers subdomains)."""
    scheme, host, port = origin
    for entry in getattr(settings, "CSRF_TRUSTED_ORIGINS", ()):
        wildcard = "://*." in entry
        trusted = _origin_parts(entry.replace("://*.", "://", 1) if wildcard else entry)
        if trusted is None or (trusted[0], trusted[2]) != (scheme, port):
            continue
        if host == trusted[1] or (wildcard and host.endswith("." + trusted[1])):
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a websocket handshake's ``Origin`` is the site's own (scheme, host and port) or a trusted one.

    Same-origin is Django's CSRF rule: the Origin must equal the scheme and ``Host`` the handshake came with
    (that Host being in ``ALLOWED_HOSTS``), or be listed in ``CSRF_TRUSTED_ORIGINS``. A handshake with no Origin
    comes from no browser; it is let through only when ``ALLOWED_HOSTS`` has ``"*"``, as Channels does.
    """
    raw = _header(scope, b"origin")
    if raw is None:
        return "*" in settings.ALLOWED_HOSTS
    origin = _origin_parts(raw.decode("latin-1"))
    if origin is None:
        return False
    own = _own_origin(scope)
    return (own is not None and origin == own) or _trusted(origin)


class SameOriginValidator:
    """ASGI middleware: refuse a websocket whose Origin is not this site's (scheme, host and port) or trusted.

    Channels' ``AllowedHostsOriginValidator`` compares host names only, so a page on another port or scheme
    of an allowed host (``http://example.com:8080``) could open a socket riding on the session cookie.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            origin = dict(scope.get("headers") or []).get(b"origin", b"").decode("latin-1") or "(none)"
            logger.warning(
                "chatmodel websocket refused (origin %s is not this site; see SameOriginValidator): %s",
                origin,
                scope.get("path", ""),
            )
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


# --- who is calling ---------------------------------------------------------------------------------


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
        if user is not None:
            scope[TOKEN_KEY] = parts[1].decode("ascii")
        return await self.inner(scope, receive, send)


async def login_still_valid(scope: dict[str, Any]) -> bool:
    """Whether the login a socket was opened with still names its user (True for anonymous sockets).

    A token socket asks for its token again; a cookie socket reads its session afresh from the session
    store, with Django's own checks (the session exists, its password hash still matches, the user is active).
    """
    user = scope.get("user")
    key = scope.get(TOKEN_KEY)
    if key is not None:
        current = await _token_user(key)
        return current is not None and user is not None and current.pk == user.pk
    session = scope.get("session")
    if user is None or not user.is_authenticated or session is None or not session.session_key:
        return True
    current = await get_user({"session": session.__class__(session_key=session.session_key)})
    return bool(current.is_authenticated and current.pk == user.pk)


def ChatModelAuthMiddlewareStack(inner: Any) -> Any:
    """Session-cookie auth (Channels) with token auth on top: wrap the websocket router in it."""
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))

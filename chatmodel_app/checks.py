"""System checks, registered in ``AppConfig.ready()``.

Ids: E001 bad numbers, E002 lease shorter than a retried call, E003 provider settings open to callers,
W001 in-memory channel layer in production, W002 missing provider keys, W003 ASGI application without the
app's websocket route, W004 (``--deploy``) a staff login whose password is its name.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import DEFAULTS

# The path the app's JavaScript client opens (chatmodel.js), with a sample uuid.
WEBSOCKET_PATH = "ws/chatmodel/sessions/00000000-0000-4000-8000-000000000000/"
# How many staff logins W005 tries: each try costs one password hash (tenths of a second).
MAX_STAFF_CHECKED = 25


def _setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def worst_call_seconds(timeout: float, retries: int) -> float:
    """The longest a model call can take: LiteLLM makes up to 2N+1 attempts of a retryable error, each a timeout."""
    return timeout * (2 * retries + 1)


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list:
    """Validate the CHATMODEL_* settings' types and ranges."""
    errors = []
    for name in ("CHATMODEL_TIMEOUT", "CHATMODEL_RUN_LEASE_SECONDS"):
        value = _setting(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(
                Error(
                    f"{name} must be a positive number; got {value!r}.",
                    hint=f"Set {name} to a number of seconds, or remove it to use the default ({DEFAULTS[name]}).",
                    id="chatmodel_app.E001",
                )
            )
    timeout, lease = _setting("CHATMODEL_TIMEOUT"), _setting("CHATMODEL_RUN_LEASE_SECONDS")
    retries = _setting("CHATMODEL_NUM_RETRIES")
    retries = retries if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0 else 0
    # A call that is not streamed renews no lease, and LiteLLM's retries (its own, then the completion wrapper's)
    # make up to 2N+1 attempts of a retryable error, each up to the timeout: the lease must outlast them all.
    worst = worst_call_seconds(timeout, retries) if not errors else 0
    if not errors and lease <= worst:
        errors.append(
            Error(
                f"CHATMODEL_RUN_LEASE_SECONDS ({lease}) must be longer than the longest model call, "
                f"CHATMODEL_TIMEOUT x (2 x CHATMODEL_NUM_RETRIES + 1) = {timeout} x {2 * retries + 1} = {worst:g} "
                "seconds, or a slow call would lose its session to another run.",
                hint=f"Set CHATMODEL_RUN_LEASE_SECONDS above {worst:g}, or lower CHATMODEL_TIMEOUT or "
                "CHATMODEL_NUM_RETRIES.",
                id="chatmodel_app.E002",
            )
        )
    allowed = _setting("CHATMODEL_ALLOWED_PARAMS")
    forbidden = {"model", "api_base", "base_url", "api_key", "custom_llm_provider", "extra_headers", "api_version"}
    if set(allowed) & forbidden:
        names = ", ".join(sorted(set(allowed) & forbidden))
        errors.append(
            Error(
                f"CHATMODEL_ALLOWED_PARAMS must not let callers choose provider settings: remove {names}.",
                hint="Provider settings belong to the version (its model and params, set in the admin) and to "
                "the server's environment, never to a caller's run().",
                id="chatmodel_app.E003",
            )
        )
    return errors


@register(Tags.compatibility)
def check_channel_layer(app_configs=None, **kwargs) -> list:
    """Warn when the in-memory channel layer would be used in production."""
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    backend = layers.get("default", {}).get("BACKEND", "")
    if not settings.DEBUG and backend in (
        "channels.layers.InMemoryChannelLayer",
        "chatmodel_app.layers.InMemoryChannelLayer",
    ):
        return [
            Warning(
                "The in-memory channel layer is used with DEBUG=False: websockets on different workers will not "
                "see each other's runs.",
                hint='Set CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", '
                '"CONFIG": {"hosts": ["redis://..."]}}} (pip install channels-redis).',
                id="chatmodel_app.W001",
            )
        ]
    return []


def _published_versions() -> list[Any] | None:
    from django.db import DatabaseError

    from .models import Version

    try:
        return list(
            Version.objects.filter(is_published=True)
            .select_related("chat_model")
            .only("number", "model", "fallbacks", "params", "chat_model__name")
        )
    except DatabaseError:  # not migrated yet: nothing is published
        return None


def _litellm_missing_keys(model: str, api_base: str | None) -> list[str]:
    """The environment variables LiteLLM says ``model`` needs and does not find (imports litellm)."""
    from .llm import get_litellm

    try:
        report = get_litellm().validate_environment(model, api_base=api_base)
    except Exception:  # a model string LiteLLM cannot place: the run will say so
        return []
    # Base URLs are not keys: a local server's default (or the version's api_base) serves without them.
    return [name for name in report.get("missing_keys") or [] if not name.upper().endswith("_API_BASE")]


@register(Tags.compatibility)
def check_provider_keys(app_configs=None, **kwargs) -> list:
    """Warn when a published version needs a provider key that the environment does not set."""
    from .llm import is_offline
    from .llm.providers import missing_key, profiles

    published = _published_versions()
    if not published:
        return []
    known = profiles()
    warnings = []
    for version in published:
        params = version.params or {}
        if params.get("api_key"):
            continue
        for model in dict.fromkeys([version.model, *(version.fallbacks or [])]):
            prefix, _, rest = model.partition("/")
            if is_offline(model):
                continue
            if rest and prefix in known:
                variable = missing_key(model)
                missing = [variable] if variable else []
            else:
                # litellm is imported only here, for a model no profile covers.
                missing = _litellm_missing_keys(model, params.get("api_base"))
            if not missing:
                continue
            names = " or ".join(missing) if len(missing) > 1 and _alternatives(missing) else ", ".join(missing)
            warnings.append(
                Warning(
                    f"Published version {version} uses {model!r}, but the environment does not set {names}: its "
                    "runs will fail with 'authentication'.",
                    hint=f"Set {names} in the server's environment (never in the database), then restart it.",
                    obj=version,
                    id="chatmodel_app.W002",
                )
            )
    return warnings


def _alternatives(names: list[str]) -> bool:
    """Whether LiteLLM lists two names for one key (GEMINI_API_KEY or GOOGLE_API_KEY), not two settings."""
    return all(name.upper().endswith("_API_KEY") for name in names)


# --- websocket routing -------------------------------------------------------------------------------------


def _websocket_route(application: Any, path: str, depth: int = 0) -> bool | None:
    """Whether ``application`` sends a websocket on ``path`` to the app's consumer; None when it cannot tell."""
    from channels.routing import ProtocolTypeRouter, URLRouter

    from .consumers import SessionConsumer

    if depth > 20:
        return None
    if isinstance(application, ProtocolTypeRouter):
        websocket = application.application_mapping.get("websocket")
        return False if websocket is None else _websocket_route(websocket, path, depth + 1)
    if isinstance(application, URLRouter):
        for route in application.routes:
            match = route.pattern.match(path)
            if match:
                return _websocket_route(route.callback, match[0], depth + 1)
        return False
    consumer = getattr(application, "consumer_class", None)
    if consumer is not None:
        return issubclass(consumer, SessionConsumer)
    # Middleware (channels' own, origin validators, most third-party wrappers) keeps what it wraps here.
    for attribute in ("inner", "application", "app"):
        inner = getattr(application, attribute, None)
        if inner is not None and inner is not application:
            return _websocket_route(inner, path, depth + 1)
    from django.core.handlers.asgi import ASGIHandler

    # Django's own handler refuses every websocket.
    return False if isinstance(application, ASGIHandler) else None


@register(Tags.compatibility)
def check_asgi_routing(app_configs=None, **kwargs) -> list:
    """Warn when ``ASGI_APPLICATION`` does not send the app's websocket path to its consumer."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return []
    hint = (
        "In asgi.py: application = ProtocolTypeRouter({'http': get_asgi_application(), 'websocket': "
        "SameOriginValidator(ChatModelAuthMiddlewareStack(URLRouter(websocket_urlpatterns)))}), with "
        "websocket_urlpatterns from chatmodel_app.routing, SameOriginValidator and ChatModelAuthMiddlewareStack from "
        "chatmodel_app.ws_auth (docs: Getting started)."
    )
    from django.utils.module_loading import import_string

    from .llm.calls import preload_held

    try:
        with preload_held():  # a management command's checks must not import litellm (asgi.py's preload)
            application = import_string(path)
        routed = _websocket_route(application, WEBSOCKET_PATH)
    except Exception as exc:  # a check must not fail: say what could not be checked, and why
        return [
            Warning(
                f"ASGI_APPLICATION {path!r} could not be loaded to check its websocket routing "
                f"({type(exc).__name__}: {exc}).",
                hint=f"Fix the import of {path!r}; the admin playground and websocket clients need it. " + hint,
                id="chatmodel_app.W003",
            )
        ]
    if routed is not False:
        return []
    return [
        Warning(
            f"ASGI_APPLICATION {path!r} does not route the app's websocket path /ws/chatmodel/sessions/<uuid>/ "
            "to its consumer: the admin playground shows 'Reconnecting...' forever and websocket clients "
            "are refused.",
            hint=hint,
            id="chatmodel_app.W003",
        )
    ]


# --- deployment --------------------------------------------------------------------------------------------


@register(Tags.security, deploy=True)
def check_demo_logins(app_configs=None, **kwargs) -> list:
    """Warn (``check --deploy``) when a staff login's password is its own name, as ``chatmodel_demo --user`` sets."""
    if settings.DEBUG:
        return []
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import check_password
    from django.core.exceptions import FieldError
    from django.db import DatabaseError
    from django.db.models import Q

    user_model = get_user_model()
    try:
        staff = list(
            user_model.objects.filter(Q(is_staff=True) | Q(is_superuser=True), is_active=True).order_by(
                "-is_superuser", "pk"
            )[:MAX_STAFF_CHECKED]
        )
    except (DatabaseError, FieldError):  # not migrated yet, or a user model without staff flags
        return []
    warnings = []
    for user in staff:
        name = user.get_username()
        # The module function, not user.check_password: a match must not re-save the hash.
        if user.password and check_password(name, user.password):
            warnings.append(
                Warning(
                    f"The staff login {name!r} has its own name as its password (as `chatmodel_demo --user` "
                    "sets for a local demo), and DEBUG is off.",
                    hint=f"Run `manage.py changepassword {name}`, or delete the login if it was only for the demo.",
                    obj=user,
                    id="chatmodel_app.W004",
                )
            )
    return warnings

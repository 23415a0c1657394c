"""System checks, registered in ``AppConfig.ready()``."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import DEFAULTS


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list:
    """Validate the CHATMODEL_* settings' types and ranges."""
    errors = []
    for name in ("CHATMODEL_TIMEOUT", "CHATMODEL_RUN_LEASE_SECONDS"):
        value = getattr(settings, name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(Error(f"{name} must be a positive number; got {value!r}.", id="chatmodel_app.E001"))
    timeout = getattr(settings, "CHATMODEL_TIMEOUT", DEFAULTS["CHATMODEL_TIMEOUT"])
    lease = getattr(settings, "CHATMODEL_RUN_LEASE_SECONDS", DEFAULTS["CHATMODEL_RUN_LEASE_SECONDS"])
    retries = getattr(settings, "CHATMODEL_NUM_RETRIES", DEFAULTS["CHATMODEL_NUM_RETRIES"])
    # A call that is not streamed renews no lease, and LiteLLM retries a timed-out call: the worst case is
    # (retries + 1) full timeouts, and the lease must outlast it.
    worst = timeout * (int(retries) + 1) if isinstance(retries, int) and retries >= 0 else timeout
    if not errors and lease <= worst:
        errors.append(
            Error(
                f"CHATMODEL_RUN_LEASE_SECONDS ({lease}) must be longer than CHATMODEL_TIMEOUT x "
                f"(CHATMODEL_NUM_RETRIES + 1) ({timeout} x {int(retries) + 1} = {worst}), or a slow model call "
                "would lose its session to another run.",
                id="chatmodel_app.E002",
            )
        )
    allowed = getattr(settings, "CHATMODEL_ALLOWED_PARAMS", DEFAULTS["CHATMODEL_ALLOWED_PARAMS"])
    forbidden = {"model", "api_base", "base_url", "api_key", "custom_llm_provider", "extra_headers", "api_version"}
    if set(allowed) & forbidden:
        errors.append(
            Error(
                "CHATMODEL_ALLOWED_PARAMS must not let callers choose provider settings: "
                f"remove {', '.join(sorted(set(allowed) & forbidden))}.",
                id="chatmodel_app.E003",
            )
        )
    return errors


@register(Tags.compatibility)
def check_channel_layer(app_configs=None, **kwargs) -> list:
    """Warn when the in-memory channel layer would be used in production."""
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    backend = layers.get("default", {}).get("BACKEND", "")
    if not settings.DEBUG and backend == "channels.layers.InMemoryChannelLayer":
        return [
            Warning(
                "The in-memory channel layer is used with DEBUG=False: websockets on different workers will not "
                "see each other's runs.",
                hint="Set CHANNEL_LAYERS to channels_redis (REDIS_URL in the example project).",
                id="chatmodel_app.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_provider_keys(app_configs=None, **kwargs) -> list:
    """Warn when a published version needs a provider key that the environment does not set."""
    from django.db import DatabaseError

    from .llm.providers import missing_key
    from .models import Version

    try:
        published = list(
            Version.objects.filter(is_published=True)
            .select_related("chat_model")
            .only("number", "model", "fallbacks", "chat_model__name")
        )
    except DatabaseError:  # not migrated yet: nothing is published
        return []
    warnings = []
    for version in published:
        for model in [version.model, *(version.fallbacks or [])]:
            variable = missing_key(model)
            if variable:
                warnings.append(
                    Warning(
                        f"Published version {version} uses {model!r}, but the environment variable {variable} "
                        "that holds its API key is not set: its runs will fail with 'authentication'.",
                        hint=f"Set {variable} in the server's environment (never in the database).",
                        obj=version,
                        id="chatmodel_app.W002",
                    )
                )
    return warnings

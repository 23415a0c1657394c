"""The app's settings, each read from ``django.conf.settings`` when asked (so ``override_settings`` works)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Seconds a single model call may take before it fails with error "timeout".
    "CHATMODEL_TIMEOUT": 60.0,
    # LiteLLM retries of a failed call (rate limit, 5xx, connection error).
    "CHATMODEL_NUM_RETRIES": 2,
    # Seconds a run's claim on its session lasts without a heartbeat; a dead worker frees it then.
    "CHATMODEL_RUN_LEASE_SECONDS": 120,
    # Context window for models LiteLLM does not know.
    "CHATMODEL_DEFAULT_CONTEXT_WINDOW": 8192,
    # Tokens kept free for the reply when the version sets no max_tokens.
    "CHATMODEL_DEFAULT_MAX_TOKENS": 1024,
    # Sampling parameters a caller may pass to run(); anything else is refused.
    "CHATMODEL_ALLOWED_PARAMS": [
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "seed",
        "n",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
    ],
    # Limits on one add_messages call.
    "CHATMODEL_MAX_MESSAGES_PER_REQUEST": 100,
    "CHATMODEL_MAX_MESSAGE_CHARS": 100_000,
    # add_messages with the same messages a failed run was given is a retry, not new messages.
    "CHATMODEL_DEDUPE_RETRIED_MESSAGES": True,
    # Publish every run event to the session's channel-layer group (websocket fan-out).
    "CHATMODEL_PUBLISH_EVENTS": True,
    # Seconds between streamed words of the offline demo model (0: as fast as possible).
    "CHATMODEL_OFFLINE_TOKEN_DELAY": 0.0,
}


class Settings:
    """Typed, lazily read app settings: ``from chatmodel_app.conf import conf``."""

    def _get(self, name: str) -> Any:
        return getattr(settings, name, DEFAULTS[name])

    @property
    def TIMEOUT(self) -> float:
        return float(self._get("CHATMODEL_TIMEOUT"))

    @property
    def NUM_RETRIES(self) -> int:
        return int(self._get("CHATMODEL_NUM_RETRIES"))

    @property
    def RUN_LEASE_SECONDS(self) -> int:
        return int(self._get("CHATMODEL_RUN_LEASE_SECONDS"))

    @property
    def DEFAULT_CONTEXT_WINDOW(self) -> int:
        return int(self._get("CHATMODEL_DEFAULT_CONTEXT_WINDOW"))

    @property
    def DEFAULT_MAX_TOKENS(self) -> int:
        return int(self._get("CHATMODEL_DEFAULT_MAX_TOKENS"))

    @property
    def ALLOWED_PARAMS(self) -> frozenset[str]:
        return frozenset(self._get("CHATMODEL_ALLOWED_PARAMS"))

    @property
    def MAX_MESSAGES_PER_REQUEST(self) -> int:
        return int(self._get("CHATMODEL_MAX_MESSAGES_PER_REQUEST"))

    @property
    def MAX_MESSAGE_CHARS(self) -> int:
        return int(self._get("CHATMODEL_MAX_MESSAGE_CHARS"))

    @property
    def DEDUPE_RETRIED_MESSAGES(self) -> bool:
        return bool(self._get("CHATMODEL_DEDUPE_RETRIED_MESSAGES"))

    @property
    def PUBLISH_EVENTS(self) -> bool:
        return bool(self._get("CHATMODEL_PUBLISH_EVENTS"))

    @property
    def OFFLINE_TOKEN_DELAY(self) -> float:
        return float(self._get("CHATMODEL_OFFLINE_TOKEN_DELAY"))


conf = Settings()

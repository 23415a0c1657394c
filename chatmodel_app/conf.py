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
    # It must outlast a call that is retried: LiteLLM makes up to 2 x NUM_RETRIES + 1 attempts of a retryable
    # error, each up to TIMEOUT (check E002), so the defaults need more than 60 x 5 = 300.
    "CHATMODEL_RUN_LEASE_SECONDS": 360,
    # Context window for models LiteLLM does not know.
    "CHATMODEL_DEFAULT_CONTEXT_WINDOW": 8192,
    # Tokens kept free for the reply when the version sets no max_tokens.
    "CHATMODEL_DEFAULT_MAX_TOKENS": 1024,
    # Call OpenAI-compatible routes (openai/<model> with an api_base, the provider profiles) with the lean httpx
    # client beneath LiteLLM instead of litellm.completion: same errors, retries and costs, a fraction of the CPU.
    "CHATMODEL_LEAN_CLIENT": True,
    # Truncation "summary": the model that writes summaries when a version names none ("": the version's own).
    "CHATMODEL_SUMMARY_MODEL": "",
    # Truncation "summary": the longest summary, in tokens (the summary call's max_tokens and its room in the window).
    "CHATMODEL_SUMMARY_MAX_TOKENS": 512,
    # Truncation "summary": share of the history budget kept verbatim when older messages are condensed.
    "CHATMODEL_SUMMARY_KEEP_RATIO": 0.5,
    # Truncation "summary": the instructions of the summary call.
    "CHATMODEL_SUMMARY_PROMPT": (
        "You keep the memory of a long conversation between a user and an assistant. Update the summary so far "
        "with the new messages: keep every fact, name, number, decision, preference and open question that may "
        "matter later; drop small talk. Write plain sentences in the conversation's language, at most a few "
        "paragraphs, and reply with the summary only."
    ),
    # Titles of conversations, made after a session's first exchange (services/titles.py). The model that writes
    # them: an offline model string (the default) makes one from the first user message's words, at no cost and
    # with no call; a LiteLLM model string asks that model; "" asks the version's own model; None: no titles.
    "CHATMODEL_TITLE_MODEL": "offline/demo",
    # The instructions of the title call.
    "CHATMODEL_TITLE_PROMPT": (
        "Write a short title (at most six words) for the conversation below, in its language. "
        "Reply with the title only: no quotes, no final punctuation."
    ),
    # Make titles with a real model on a thread of their own, after the reply is stored and sent (False: inline,
    # before the run returns; the offline model is always inline, as it makes no call).
    "CHATMODEL_TITLE_BACKGROUND": True,
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
    # Milliseconds over which a stream's text deltas are merged into one published event (websocket and SSE);
    # the first delta goes out at once. 0 publishes every provider chunk as its own event.
    "CHATMODEL_STREAM_COALESCE_MS": 40,
    # Threads of a worker process that run the async pipeline's database steps. None: 1 on SQLite (one writer
    # at a time is the database's own rule), 8 on other databases (each thread holds a connection, from the
    # pool where one is set). 1 runs them on the thread Django's sync_to_async shares (the whole worker's).
    "CHATMODEL_DB_THREADS": None,
    # Seconds between streamed words of the offline demo model (0: as fast as possible).
    "CHATMODEL_OFFLINE_TOKEN_DELAY": 0.0,
    # Admin: messages per page of a session's conversation (the newest page is shown first).
    "CHATMODEL_ADMIN_MESSAGES_PER_PAGE": 100,
    # Admin: versions listed on a chat model's page (newest first; the rest are in the version list).
    "CHATMODEL_ADMIN_VERSIONS_ON_PAGE": 100,
    # REST API: let unauthenticated callers in; their sessions are reachable by anyone who knows the uuid.
    "CHATMODEL_API_ALLOW_ANONYMOUS": False,
    # REST API: roles a client may add; "system" is refused whatever this says (the prompt is the version's).
    "CHATMODEL_API_ALLOWED_ROLES": ["user", "function", "tool"],
    # REST API: DRF classes (dotted paths) of the views; the app's own, so a host's AllowAny default cannot open it.
    "CHATMODEL_API_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "CHATMODEL_API_PERMISSION_CLASSES": ["chatmodel_app.api.permissions.IsAuthenticatedOrAnonymousAllowed"],
    "CHATMODEL_API_THROTTLE_CLASSES": ["chatmodel_app.api.throttling.RunRateThrottle"],
    # REST API: the Django permission the config endpoint needs (the config reveals the system prompt).
    "CHATMODEL_API_CONFIG_PERMISSION": "chatmodel_app.view_version",
    # REST API: messages per page of a session's history (the default, and the most a client may ask for).
    "CHATMODEL_API_PAGE_SIZE": 50,
    "CHATMODEL_API_MAX_PAGE_SIZE": 200,
    # REST API: seconds of silence after which an SSE stream sends a comment line, so proxies keep it open.
    "CHATMODEL_API_SSE_KEEPALIVE_SECONDS": 15.0,
    # Websocket: the largest text frame a client may send, in bytes (bigger ones get an error event).
    "CHATMODEL_WS_MAX_FRAME_BYTES": 524_288,
    # Websocket: frames one socket may send, as "<n>/<s|min|h>" (a token bucket); None: no limit.
    "CHATMODEL_WS_RATE_LIMIT": "120/min",
    # Websocket: cancel a run when the socket that started it disconnects (default: the run finishes and is stored).
    "CHATMODEL_WS_RUNS_FOLLOW_SOCKET": False,
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
    def STREAM_COALESCE_MS(self) -> float:
        return float(self._get("CHATMODEL_STREAM_COALESCE_MS"))

    @property
    def DB_THREADS(self) -> int | None:
        value = self._get("CHATMODEL_DB_THREADS")
        return None if value is None else int(value)

    @property
    def LEAN_CLIENT(self) -> bool:
        return bool(self._get("CHATMODEL_LEAN_CLIENT"))

    @property
    def DEFAULT_CONTEXT_WINDOW(self) -> int:
        return int(self._get("CHATMODEL_DEFAULT_CONTEXT_WINDOW"))

    @property
    def DEFAULT_MAX_TOKENS(self) -> int:
        return int(self._get("CHATMODEL_DEFAULT_MAX_TOKENS"))

    @property
    def SUMMARY_MODEL(self) -> str:
        return str(self._get("CHATMODEL_SUMMARY_MODEL") or "")

    @property
    def SUMMARY_MAX_TOKENS(self) -> int:
        return int(self._get("CHATMODEL_SUMMARY_MAX_TOKENS"))

    @property
    def SUMMARY_KEEP_RATIO(self) -> float:
        return min(1.0, max(0.0, float(self._get("CHATMODEL_SUMMARY_KEEP_RATIO"))))

    @property
    def SUMMARY_PROMPT(self) -> str:
        return str(self._get("CHATMODEL_SUMMARY_PROMPT"))

    @property
    def TITLE_MODEL(self) -> str | None:
        value = self._get("CHATMODEL_TITLE_MODEL")
        return None if value is None or value is False else str(value)

    @property
    def TITLE_PROMPT(self) -> str:
        return str(self._get("CHATMODEL_TITLE_PROMPT"))

    @property
    def TITLE_BACKGROUND(self) -> bool:
        return bool(self._get("CHATMODEL_TITLE_BACKGROUND"))

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

    @property
    def ADMIN_MESSAGES_PER_PAGE(self) -> int:
        return int(self._get("CHATMODEL_ADMIN_MESSAGES_PER_PAGE"))

    @property
    def ADMIN_VERSIONS_ON_PAGE(self) -> int:
        return int(self._get("CHATMODEL_ADMIN_VERSIONS_ON_PAGE"))

    @property
    def API_ALLOW_ANONYMOUS(self) -> bool:
        return bool(self._get("CHATMODEL_API_ALLOW_ANONYMOUS"))

    @property
    def API_ALLOWED_ROLES(self) -> frozenset[str]:
        return frozenset(self._get("CHATMODEL_API_ALLOWED_ROLES")) - {"system"}

    @property
    def API_AUTHENTICATION_CLASSES(self) -> list[str]:
        return list(self._get("CHATMODEL_API_AUTHENTICATION_CLASSES"))

    @property
    def API_PERMISSION_CLASSES(self) -> list[str]:
        return list(self._get("CHATMODEL_API_PERMISSION_CLASSES"))

    @property
    def API_THROTTLE_CLASSES(self) -> list[str]:
        return list(self._get("CHATMODEL_API_THROTTLE_CLASSES"))

    @property
    def API_CONFIG_PERMISSION(self) -> str:
        return str(self._get("CHATMODEL_API_CONFIG_PERMISSION"))

    @property
    def API_PAGE_SIZE(self) -> int:
        return int(self._get("CHATMODEL_API_PAGE_SIZE"))

    @property
    def API_MAX_PAGE_SIZE(self) -> int:
        return int(self._get("CHATMODEL_API_MAX_PAGE_SIZE"))

    @property
    def API_SSE_KEEPALIVE_SECONDS(self) -> float:
        return float(self._get("CHATMODEL_API_SSE_KEEPALIVE_SECONDS"))

    @property
    def WS_MAX_FRAME_BYTES(self) -> int:
        return int(self._get("CHATMODEL_WS_MAX_FRAME_BYTES"))

    @property
    def WS_RATE_LIMIT(self) -> str | None:
        value = self._get("CHATMODEL_WS_RATE_LIMIT")
        return str(value) if value else None

    @property
    def WS_RUNS_FOLLOW_SOCKET(self) -> bool:
        return bool(self._get("CHATMODEL_WS_RUNS_FOLLOW_SOCKET"))


conf = Settings()

"""The run throttle of every door: scope ``chatmodel_run``, rate from DRF's ``DEFAULT_THROTTLE_RATES``.

REST and the websocket both call ``run_throttle_wait`` with the classes of ``CHATMODEL_API_THROTTLE_CLASSES``,
so a user's runs count against one limit (the same cache keys) whichever door they come through.

Anonymous callers are told apart by address. ``X-Forwarded-For`` is anyone's to write, so it is read only when
DRF's ``NUM_PROXIES`` says how many proxies in front of the server append to it; unset (DRF would then trust
the whole header) or 0, the address is the connection's own (``REMOTE_ADDR``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

from django.utils.module_loading import import_string
from rest_framework.exceptions import Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from ..conf import conf

RUN_SCOPE = "chatmodel_run"
# Used when the host's REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] names no rate for the scope.
DEFAULT_RUN_RATE = "60/minute"
# The error code of a throttled run, on both doors (DRF's own: the ``code`` of REST's 429 body).
THROTTLED_CODE = Throttled.default_code


def client_ident(meta: dict[str, Any]) -> str | None:
    """The client address of a request: ``REMOTE_ADDR``, or the ``X-Forwarded-For`` entry NUM_PROXIES points at."""
    remote_addr = meta.get("REMOTE_ADDR")
    xff = meta.get("HTTP_X_FORWARDED_FOR")
    num_proxies = api_settings.NUM_PROXIES
    if not num_proxies or not xff:
        return remote_addr
    addrs = xff.split(",")
    return addrs[-min(num_proxies, len(addrs))].strip()


class RunRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` that reads the rate on each request (so ``override_settings`` works) with a default.

    Unlike DRF's throttles it never trusts ``X-Forwarded-For`` unless ``NUM_PROXIES`` is set (see the module).
    """

    def get_rate(self) -> str | None:
        # Rates are strings ("60/minute"); the DRF stubs type the setting's values as numbers.
        rates = cast("dict[str, str | None]", api_settings.DEFAULT_THROTTLE_RATES or {})
        if self.scope in rates:
            return rates[self.scope]  # None there turns the throttle off, as in DRF
        return DEFAULT_RUN_RATE if self.scope == RUN_SCOPE else None

    def get_ident(self, request: Any) -> str:
        return str(client_ident(request.META))


class RunScope:
    """Stands for the run view where a throttle asks for one (it reads only ``throttle_scope``)."""

    throttle_scope = RUN_SCOPE


class SocketRequest:
    """What a throttle reads of a request (``user``, ``META``), from a websocket's ASGI scope."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.user = scope.get("user")
        client = scope.get("client") or (None, None)
        self.META: dict[str, Any] = {"REMOTE_ADDR": client[0]}
        for name, value in scope.get("headers") or ():
            if name.lower() == b"x-forwarded-for":
                self.META["HTTP_X_FORWARDED_FOR"] = value.decode("latin-1")


@lru_cache(maxsize=16)
def _throttle_class(path: str) -> type:
    return import_string(path)


def run_throttle_wait(request: Any, view: Any = None) -> float | None:
    """Count one run of ``request``'s user: None when it may start, else the seconds to wait (0.0: unknown)."""
    view = view if view is not None else RunScope()
    waits = []
    for path in conf.API_THROTTLE_CLASSES:
        throttle = _throttle_class(path)()
        if not throttle.allow_request(request, view):
            waits.append(throttle.wait())
    if not waits:
        return None
    # As DRF: the longest wait named; None means a throttle could not say.
    return max((w for w in waits if w is not None), default=0.0)


def submit_throttle_wait(request: Any, session: Any, requested_policy: Any) -> float | None:
    """The run throttle for adding messages: counted only when they may start a run, as a double-texting
    policy other than ``reject`` does while a run is active (enqueue runs them later; interrupt and rollback
    now). None when the messages may go in, else the seconds to wait (0.0: unknown)."""
    from ..services import double_texting, leases

    # A policy the version does not allow is refused here, with the error messages_submit would give.
    policy = double_texting.policy_for(session.version, requested_policy)
    if policy == double_texting.Policy.REJECT or leases.holder(session_id=session.pk) is None:
        return None
    return run_throttle_wait(request)


class RunThrottled:
    """Mixin of the views that start runs (REST, OpenAI-compatible, AI SDK): one run counted against the run
    throttle, with the same cache keys as the websocket's runs."""

    throttle_scope = RUN_SCOPE

    def check_throttles(self, request: Any) -> None:
        wait = run_throttle_wait(request, self)
        if wait is not None:
            self.throttled(request, wait or None)  # type: ignore[attr-defined]  # the APIView's


def throttled_message(wait: float | None) -> str:
    """DRF's wording of a throttled request, so both doors say the same."""
    return str(Throttled(wait=wait or None).detail)

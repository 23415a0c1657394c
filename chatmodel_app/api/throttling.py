"""The scoped throttle of ``run``: scope ``chatmodel_run``, rate from DRF's ``DEFAULT_THROTTLE_RATES``."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

RUN_SCOPE = "chatmodel_run"
# Used when the host's REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] names no rate for the scope.
DEFAULT_RUN_RATE = "60/minute"


class RunRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` that reads the rate on each request (so ``override_settings`` works) with a default."""

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        if self.scope in rates:
            return rates[self.scope]  # None there turns the throttle off, as in DRF
        return DEFAULT_RUN_RATE if self.scope == RUN_SCOPE else None

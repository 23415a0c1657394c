"""The one place litellm is imported, on first use.

``import litellm`` costs seconds and ~170 MB, so neither ``import chatmodel_app`` nor
Django start-up pays it. Before importing, set the switches that keep it offline and
quiet: the bundled cost map (else it fetches one over the network) and production mode
(else it loads the host's ``.env``).
"""

from __future__ import annotations

import logging
import os
import threading
from types import ModuleType

_lock = threading.Lock()
_litellm: ModuleType | None = None
_offline_handler = None


def get_litellm() -> ModuleType:
    """Import and configure litellm once; later calls return the module."""
    global _litellm, _offline_handler
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
            os.environ.setdefault("LITELLM_LOG", "ERROR")
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            # Provider-specific params a model does not take are dropped, not fatal.
            litellm.drop_params = True
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                logging.getLogger(name).setLevel(logging.WARNING)

            from ._offline_provider import OfflineDemoLLM
            from .offline import PROVIDER

            _offline_handler = OfflineDemoLLM()
            litellm.custom_provider_map = [
                *[p for p in litellm.custom_provider_map if p.get("provider") != PROVIDER],
                {"provider": PROVIDER, "custom_handler": _offline_handler},
            ]
            from litellm.utils import custom_llm_setup

            custom_llm_setup()
            _disarm_stream_finalizer(litellm)
            _litellm = litellm
    return _litellm


def offline_handler():
    """The registered offline demo provider (to set its token delay)."""
    get_litellm()
    return _offline_handler


def is_loaded() -> bool:
    """Whether litellm has been imported by this process."""
    return _litellm is not None


def _disarm_stream_finalizer(litellm: ModuleType) -> None:
    """Keep ``CustomStreamWrapper.__del__`` from setting ContextVars while request correlation is off.

    LiteLLM 1.110's finalizer writes the trace_id/session_id ContextVars back; with
    ``request_correlation_in_logs`` off (the default) it only writes back the empty ids it found. When
    the cyclic collector runs it inside another ``ContextVar.set`` of the same Context, CPython 3.11
    frees the HAMT the interrupted set is still copying and the process dies (gh-148891, issue 19
    item 11). ``llm.LiteLLMStream`` also breaks the cycle that leaves wrappers to the collector.
    """
    try:
        from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    except ImportError:  # another LiteLLM layout: nothing to disarm
        return
    original = CustomStreamWrapper.__dict__.get("__del__")
    if original is None or getattr(original, "_chatmodel_disarmed", False):
        return

    def __del__(self) -> None:
        if litellm.request_correlation_in_logs:
            original(self)

    __del__._chatmodel_disarmed = True  # type: ignore[attr-defined]
    CustomStreamWrapper.__del__ = __del__

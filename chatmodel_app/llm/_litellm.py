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
            _litellm = litellm
    return _litellm


def offline_handler():
    """The registered offline demo provider (to set its token delay)."""
    get_litellm()
    return _offline_handler


def is_loaded() -> bool:
    """Whether litellm has been imported by this process."""
    return _litellm is not None

"""The LLM layer: the only code that talks to litellm (imported lazily by ``_litellm``).

The rest of the app calls ``complete``/``acomplete`` for one reply, ``open_stream``/
``aopen_stream`` plus ``StreamAssembler`` for a streamed one, ``count_tokens`` and
``context_window``; failures come out as ``LLMError`` with a stable ``code``.

The modules: ``calls`` (the four calls and how each is routed), ``lean`` (the httpx client for
OpenAI-compatible routes), ``completion`` (replies and stream assembly), ``litellm_stream``,
``errors`` (mapping and scrubbing), ``model_info`` (windows, token counts), ``providers``,
``messages``, ``offline``.
"""

from __future__ import annotations

from . import lean as lean
from . import providers as providers
from ._litellm import get_litellm as get_litellm
from ._litellm import is_loaded
from .calls import acomplete, aopen_stream, complete, open_stream, preload
from .calls import aget_litellm as aget_litellm
from .completion import Completion, StreamAssembler
from .errors import LLMError, map_exception
from .errors import request_secrets as request_secrets
from .errors import scrub as scrub
from .litellm_stream import LiteLLMStream as LiteLLMStream
from .model_info import context_window, count_tokens, is_offline, known_models
from .model_info import register_model_info as register_model_info

__all__ = [
    "Completion",
    "LLMError",
    "StreamAssembler",
    "acomplete",
    "aopen_stream",
    "complete",
    "context_window",
    "count_tokens",
    "is_loaded",
    "is_offline",
    "known_models",
    "map_exception",
    "open_stream",
    "preload",
]

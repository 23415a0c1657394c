"""LiteLLM's stream, wrapped so that it is let go of (and its reference cycle broken) as soon as it ends."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any

from .errors import tag_secrets


def _clear_frames(error: BaseException | None) -> None:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__ or getattr(error, "original_exception", None)


class LiteLLMStream:
    """A stream from LiteLLM, let go of as soon as it ends, fails or is closed.

    LiteLLM 1.110's ``CustomStreamWrapper`` sits in a reference cycle with its logging object
    (``logging_obj.model_call_details["original_response"]`` is the wrapper), so the cyclic garbage
    collector frees it, and its ``__del__`` sets the trace_id/session_id ContextVars. On CPython 3.11
    the collector can run inside another ``ContextVar.set`` of the same Context (asgiref's
    ``_restore_context``), and the nested set frees the HAMT the interrupted one is copying: a SIGSEGV
    (CPython gh-148891, issue 19 item 11). Breaking the cycle when the run ends frees the wrapper by
    reference counting, outside any collection; ``_litellm`` also disarms that finalizer.
    """

    def __init__(self, inner: Any, secrets: Sequence[str] = ()) -> None:
        self.inner = inner
        self.secrets = list(secrets)
        self.received_finish_reason: Any = "unknown"
        self.intermittent_finish_reason: Any = None
        self.is_provider_stream = type(inner).__name__ == "CustomStreamWrapper"
        self._hidden_params: dict[str, Any] = {}
        self._snapshot()

    def _snapshot(self) -> None:
        inner = self.inner
        self.received_finish_reason = getattr(inner, "received_finish_reason", "unknown")
        self.intermittent_finish_reason = getattr(inner, "intermittent_finish_reason", None)
        self._hidden_params = getattr(inner, "_hidden_params", None) or {}

    def release(self, error: BaseException | None = None) -> None:
        """Record what the assembler reads, break LiteLLM's cycles, and drop the wrapper.

        A failure's traceback holds LiteLLM's frames, whose locals hold the wrapper (and the exception
        holds the traceback): those frames are cleared too, as far as they have finished running.
        """
        _clear_frames(error)
        inner = self.inner
        if inner is None:
            return
        self._snapshot()
        self.inner = None
        seen: set[int] = set()
        while inner is not None and id(inner) not in seen:
            seen.add(id(inner))
            details = getattr(getattr(inner, "logging_obj", None), "model_call_details", None)
            if isinstance(details, dict) and details.get("original_response") is inner:
                details["original_response"] = None
            inner = getattr(inner, "completion_stream", None)

    def __iter__(self) -> LiteLLMStream:
        return self

    def __next__(self) -> Any:
        if self.inner is None:
            raise StopIteration
        try:
            return next(self.inner)
        except BaseException as exc:
            self.release(exc)
            tag_secrets(exc, self.secrets)
            raise

    def __aiter__(self) -> LiteLLMStream:
        return self

    async def __anext__(self) -> Any:
        if self.inner is None:
            raise StopAsyncIteration
        try:
            return await self.inner.__anext__()
        except BaseException as exc:
            self.release(exc)
            tag_secrets(exc, self.secrets)
            raise

    def close(self) -> None:
        inner = self.inner
        target = getattr(inner, "completion_stream", None) or inner
        if target is not None and callable(getattr(target, "close", None)):
            target.close()
        self.release()

    async def aclose(self) -> None:
        inner = self.inner
        target = getattr(inner, "completion_stream", None) or inner
        if target is not None and callable(getattr(target, "aclose", None)):
            await target.aclose()
        self.release()

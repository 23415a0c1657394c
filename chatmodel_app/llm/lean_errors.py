"""The lean client's failures, shaped as the ``openai`` SDK raises them and mapped by LiteLLM, and its retries.

Retries repeat LiteLLM's count (see ``lean``): the SDK's own retries of retryable errors, then
``completion_with_retries``'s attempts for any error.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .lean import Plan


class Failure(Exception):
    """A failed attempt: the LiteLLM exception it maps to, whether the SDK would retry it, and its headers."""

    def __init__(self, error: Exception, retryable: bool, headers: Any = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable
        self.headers = headers


@functools.lru_cache(maxsize=1)
def _sdk() -> Any:
    """An idle SDK client, used only for its error and retry rules (it never sends a request)."""
    import openai

    return openai.OpenAI(api_key="unused", base_url="http://127.0.0.1/v1", max_retries=0)


def _litellm_error(sdk_error: Exception, model: str) -> Exception:
    """What LiteLLM raises for this SDK error (the same wrapping as its OpenAI handler, then its mapping)."""
    from litellm.litellm_core_utils.exception_mapping_utils import exception_type
    from litellm.llms.openai.common_utils import OpenAIError

    headers = getattr(sdk_error, "headers", None)
    response = getattr(sdk_error, "response", None)
    if headers is None and response is not None:
        headers = getattr(response, "headers", None)
    wrapped = OpenAIError(
        status_code=getattr(sdk_error, "status_code", 500),
        message=getattr(sdk_error, "text", str(sdk_error)),
        headers=headers,
        body=getattr(sdk_error, "body", None),
    )
    try:
        exception_type(model=model, custom_llm_provider="openai", original_exception=wrapped)
    except Exception as mapped:
        return mapped
    return wrapped  # pragma: no cover - exception_type always raises


def status_failure(response: httpx.Response, model: str) -> Failure:
    """A non-2xx answer (its body already read)."""
    sdk = _sdk()
    error = sdk._make_status_error_from_response(response)
    return Failure(_litellm_error(error, model), sdk._should_retry(response), response.headers)


def transport_failure(exc: Exception, request: httpx.Request, model: str) -> Failure:
    """A timeout, refused or cut connection: the SDK's APITimeoutError / APIConnectionError, both retried."""
    import openai

    # openai 3 types this as an httpx2 Request; the error only keeps it, for whoever reads ``error.request``.
    sdk_request: Any = request
    if isinstance(exc, httpx.TimeoutException):
        error: Exception = openai.APITimeoutError(request=sdk_request)
    else:
        error = openai.APIConnectionError(request=sdk_request)
    return Failure(_litellm_error(error, model), True)


def malformed_failure(exc: ValueError, model: str) -> Failure:
    """A 200 whose body is not JSON; the SDK does not retry it."""
    import openai

    return Failure(_litellm_error(openai.OpenAIError(f"error - {exc}"), model), False)


def missing_key_error(plan: Plan) -> Exception:
    import litellm

    return litellm.AuthenticationError(
        message=f"No API key: set {plan.key_env} in the server's environment.",
        llm_provider="openai",
        model=plan.model,
    )


def mid_stream_error(exc: Exception, request: httpx.Request | None, plan: Plan) -> Exception:
    """LiteLLM's error for a stream that broke after it began (a cut connection, a malformed chunk)."""
    from litellm.exceptions import MidStreamFallbackError

    if isinstance(exc, ValueError | Unfinished):
        original = _litellm_error(Exception(str(exc)), plan.model)
    else:
        original = transport_failure(exc, request or httpx.Request("POST", plan.url), plan.model).error
    return MidStreamFallbackError(
        message=str(original), model=plan.model, llm_provider="openai", original_exception=original
    )


class Unfinished(Exception):
    """A stream that ended cleanly without a finish_reason: LiteLLM fails it as a cut stream, and so do we."""

    def __init__(self) -> None:
        super().__init__("Stream ended before a finish_reason was received")


def backoff(retry: int, headers: Any) -> float:
    """The SDK's wait before its ``retry``-th retry: the server's Retry-After, else 0.5 s doubling, jittered."""
    from openai._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER_DELAY, MAX_RETRY_DELAY

    if headers is not None:
        after = _sdk()._parse_retry_after_header(headers)
        if after is not None and 0 < after <= MAX_RETRY_AFTER_DELAY:
            return float(after)
    return min(INITIAL_RETRY_DELAY * 2.0**retry, MAX_RETRY_DELAY) * (1 - 0.25 * random.random())


def _schedule(plan: Plan, failures: list[Failure], is_async: bool) -> float | None:
    """Seconds to wait before the next attempt after ``failures``, or None when LiteLLM would give up."""
    n = plan.num_retries
    done = len(failures)
    last = failures[-1]
    # Phase 1: the SDK's own retries (max_retries = num_retries), retryable errors only.
    first = 0
    while first < len(failures) and failures[first].retryable and first < n:
        first += 1
    phase1 = first + 1  # attempts phase 1 made (it stops at the first non-retryable error or after n retries)
    if done < phase1:
        return backoff(done - 1, last.headers)
    # Phase 2: completion_with_retries, n more attempts for any error; constant, but exponential (1, 2, 4 s, at
    # most 10) in acompletion when the error that ended phase 1 was a rate limit.
    if done >= phase1 + n:
        return None
    if not is_async or done == phase1:
        return 0.0
    import openai

    if isinstance(failures[phase1 - 1].error, openai.RateLimitError):
        return float(min(10, 2 ** (done - phase1 - 1)))
    return 0.0


def run_sync(plan: Plan, attempt: Callable[[], Any]) -> Any:
    """Call ``attempt`` on LiteLLM's retry schedule; raise the last error's LiteLLM exception."""
    failures: list[Failure] = []
    while True:
        try:
            return attempt()
        except Failure as failure:
            failures.append(failure)
        wait = _schedule(plan, failures, is_async=False)
        if wait is None:
            raise failures[-1].error
        if wait:
            time.sleep(wait)


async def run_async(plan: Plan, attempt: Callable[[], Any]) -> Any:
    failures: list[Failure] = []
    while True:
        try:
            return await attempt()
        except Failure as failure:
            failures.append(failure)
        wait = _schedule(plan, failures, is_async=True)
        if wait is None:
            raise failures[-1].error
        if wait:
            await asyncio.sleep(wait)

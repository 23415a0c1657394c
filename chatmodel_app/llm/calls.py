"""The model calls: each request routed to the lean client, LiteLLM, or LiteLLM's Router (when it has fallbacks)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from . import lean, providers
from ._litellm import get_litellm, is_loaded, offline_handler
from .completion import Completion, from_response
from .errors import LLMError, map_exception, request_secrets, tag_secrets
from .litellm_stream import LiteLLMStream
from .model_info import is_offline, register_model_info


def prepare(request: dict[str, Any]) -> dict[str, Any]:
    """Map the model string to its LiteLLM route and server-side credentials (never from the caller)."""
    request = dict(request)
    register_model_info()
    target = providers.resolve(request.pop("model"), api_base=request.pop("api_base", None))
    request.pop("api_key", None)
    request.update(target.call_kwargs())
    if is_offline(request["model"]):
        # The offline model has no server: these would only confuse litellm's custom-provider path.
        request.pop("num_retries", None)
        request.pop("stream_options", None)
        from ..conf import conf

        offline_handler().token_delay = conf.OFFLINE_TOKEN_DELAY
    else:
        # Retries are litellm's (num_retries); the OpenAI SDK's own would multiply them.
        request.setdefault("max_retries", 0)
    return request


def _route(request: dict[str, Any]) -> tuple[dict[str, Any], lean.Plan | None]:
    """LiteLLM's kwargs for the request, and the lean call when the route allows one (see lean.py)."""
    prepared = prepare(request)
    if is_offline(prepared["model"]) or not lean.enabled():
        return prepared, None
    return prepared, lean.plan(prepared, providers.resolve(request["model"]).api_key_env)


_routers: dict[Any, Any] = {}


def _router_call(request: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """LiteLLM's Router for a request with fallbacks, and the kwargs to call it with.

    Each model string is a model group of one deployment; the Router falls back in order
    on retryable errors and reports what failed (``include_fallback_errors``).
    """
    from litellm import Router

    models = [request["model"], *[m for m in request["fallbacks"] if m != request["model"]]]
    deployments = []
    for i, model in enumerate(models):
        params = prepare(
            {"model": model, **({"api_base": request["api_base"]} if i == 0 and request.get("api_base") else {})}
        )
        params = {k: v for k, v in params.items() if k in ("model", "api_base", "api_key")}
        deployments.append({"model_name": model, "litellm_params": params})
    key = (repr(deployments), request.get("num_retries"))
    router = _routers.get(key)
    if router is None:
        router = Router(
            model_list=deployments,
            fallbacks=[{models[0]: models[1:]}],
            num_retries=request.get("num_retries") or 0,
        )
        _routers.clear()  # one cached router per configuration in use; keys change rarely
        _routers[key] = router
    kwargs = {k: v for k, v in request.items() if k not in ("model", "fallbacks", "api_base", "api_key", "num_retries")}
    kwargs.update(model=models[0], include_fallback_errors=True)
    return router, kwargs


def _uses_router(request: dict[str, Any]) -> bool:
    return bool(request.get("fallbacks"))


def _failed(exc: BaseException, request: dict[str, Any]) -> LLMError:
    """The LLMError for a call that raised, with the request's own secrets scrubbed from it."""
    error = map_exception(tag_secrets(exc, request_secrets(request)))
    if error.code == "connection_error":
        error.message += _where(request)
    return error


def _where(request: dict[str, Any]) -> str:
    """Which server a refused call tried, and what sets it: the first thing to check on a local server."""
    model = str(request.get("model", ""))
    target = providers.resolve(model, api_base=request.get("api_base"))
    if not target.api_base:
        return ""
    if request.get("api_base"):
        setter = "the version's api_base param"
    else:
        profile = providers.profiles().get(target.profile or "") or {}
        env = profile.get("api_base_env")
        setter = f"the environment variable {env}" if env else "the provider profile (CHATMODEL_PROVIDERS)"
    return f". Tried {target.api_base} (set by {setter}): is the server running there?"


async def aget_litellm() -> Any:
    """litellm, imported on a worker thread the first time so the event loop never waits seconds for it."""
    if is_loaded():
        return get_litellm()
    return await asyncio.to_thread(get_litellm)


# Set while the system checks import the ASGI module (check W003): a preload asked for then is put off.
_preload_held = False
_preload_wanted = False


def preload() -> threading.Thread | None:
    """Import litellm on a background thread now (call it in asgi.py), so no request pays for it.

    While the system checks import the ASGI module to read its routing (``manage.py migrate``, ``check``...),
    nothing starts: a management command must not import litellm. ``LiveWorker`` starts a preload put off
    that way at the worker's first connection (``runserver`` runs the checks before it serves).
    """
    global _preload_wanted
    if _preload_held:
        _preload_wanted = True
        return None
    # Not a daemon: a process that ends before the import does waits for it. A daemon thread would be stopped at
    # interpreter shutdown in the middle of the import, holding module locks that shutdown may need (a hang).
    thread = threading.Thread(target=get_litellm, name="chatmodel-litellm-preload", daemon=False)
    thread.start()
    return thread


def preload_deferred() -> threading.Thread | None:
    """Start the preload that ``preload()`` put off during the system checks, if any (once)."""
    global _preload_wanted
    if not _preload_wanted or is_loaded():
        return None
    _preload_wanted = False
    return preload()


@contextlib.contextmanager
def preload_held() -> Iterator[None]:
    """Within this block, ``preload()`` only notes that it was asked for (see ``preload``)."""
    global _preload_held
    held, _preload_held = _preload_held, True
    try:
        yield
    finally:
        _preload_held = held


def complete(request: dict[str, Any]) -> Completion:
    """One model call (falling back in order when the version lists fallbacks); raises LLMError."""
    litellm = get_litellm()
    try:
        if _uses_router(request):
            router, kwargs = _router_call(request)
            response = router.completion(**kwargs)
        else:
            prepared, plan = _route(request)
            response = lean.complete(plan) if plan else litellm.completion(**prepared)
    except Exception as exc:
        raise _failed(exc, request) from exc
    return from_response(response, request["model"])


async def acomplete(request: dict[str, Any]) -> Completion:
    """One model call, natively async; raises LLMError."""
    litellm = await aget_litellm()
    try:
        if _uses_router(request):
            router, kwargs = _router_call(request)
            response = await router.acompletion(**kwargs)
        else:
            prepared, plan = _route(request)
            response = await lean.acomplete(plan) if plan else await litellm.acompletion(**prepared)
    except Exception as exc:
        raise _failed(exc, request) from exc
    return from_response(response, request["model"])


def open_stream(request: dict[str, Any]) -> Any:
    """Start a streamed call; iterate the result, feeding chunks to a StreamAssembler."""
    litellm = get_litellm()
    try:
        if _uses_router(request):
            router, kwargs = _router_call({**request, "stream": True})
            return LiteLLMStream(router.completion(**kwargs), request_secrets(request))
        prepared, plan = _route({**request, "stream": True})
        return (
            lean.open_stream(plan) if plan else LiteLLMStream(litellm.completion(**prepared), request_secrets(request))
        )
    except Exception as exc:
        raise _failed(exc, request) from exc


async def aopen_stream(request: dict[str, Any]) -> Any:
    """Start a streamed call natively async; ``async for`` over the result."""
    litellm = await aget_litellm()
    try:
        if _uses_router(request):
            router, kwargs = _router_call({**request, "stream": True})
            return LiteLLMStream(await router.acompletion(**kwargs), request_secrets(request))
        prepared, plan = _route({**request, "stream": True})
        if plan:
            return await lean.aopen_stream(plan)
        return LiteLLMStream(await litellm.acompletion(**prepared), request_secrets(request))
    except Exception as exc:
        raise _failed(exc, request) from exc

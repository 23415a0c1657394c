"""Run drivers: a run is a generator of steps; a driver performs them, in its thread or awaiting each.

A run's steps (``runs._run_steps``, ``streaming._stream_steps``) say what to do next as commands: call
a blocking step (database work), open or complete a model call, read the next chunk, close the
stream, publish events, or hand a result to the caller. They receive each result, or have the
step's exception thrown in. ``perform`` does each step in the caller's thread; ``aperform`` awaits
it (the model natively, the database through ``sync_to_async``). So the sync and async paths share
every step and differ only in how they wait.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, connections

from .. import llm
from ..conf import conf

logger = logging.getLogger("chatmodel_app")

END = object()


@dataclass
class Cmd:
    """One step for the driver: ``kind`` is call, open, iter, next, close, publish or emit."""

    kind: str
    target: Any = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Cmd:
    return Cmd("call", fn, args, kwargs)


class Abandoned(BaseException):
    """Thrown into the steps when the caller stops reading; no ``except Exception`` step may swallow it."""


def emit(result: Any) -> Cmd:
    """Hand ``result`` to the caller."""
    return Cmd("emit", result)


class Driver:
    """Steps through ``_steps``: results go back in, exceptions are thrown in; ``pump`` runs to the next chunk.

    Once the caller has gone (``abandon``), the rest of the steps run with no chunk handed out.
    """

    def __init__(self, steps: Generator[Cmd, Any, None]) -> None:
        self.steps = steps
        self.done = False
        self.abandoned = False
        self._result: Any = None
        self._error: BaseException | None = None

    def _advance(self) -> Cmd | None:
        result, error = self._result, self._error
        self._result = self._error = None
        try:
            return self.steps.throw(error) if error is not None else self.steps.send(result)
        except (StopIteration, Abandoned):
            pass
        except Exception:
            # Only the abandon path's own failure can get here: the steps handle everything else.
            logger.exception("chatmodel stream: could not store the abandoned stream")
        self.done = True
        return None

    def _waits(self, cmd: Cmd | None) -> bool:
        """Whether ``cmd`` is a step to perform, rather than the end or a chunk for a caller still reading."""
        return cmd is not None and (cmd.kind != "emit" or self.abandoned)

    def abandon(self) -> None:
        """The caller stopped reading (or was cancelled): the next pump finishes the run without it."""
        if not self.done:
            self.abandoned = True
            self._error = Abandoned()

    def pump(self, perform: Callable[[Cmd], Any]) -> Any:
        """Perform steps up to the next chunk for the caller; None at the end."""
        cmd = self._advance()
        while self._waits(cmd):
            try:
                self._result = perform(cmd)  # type: ignore[arg-type]
            except Exception as exc:
                self._error = exc
            cmd = self._advance()
        return None if cmd is None else cmd.target

    async def apump(self, perform: Callable[[Cmd], Awaitable[Any]]) -> Any:
        """``pump``, awaiting each step."""
        cmd = self._advance()
        while self._waits(cmd):
            try:
                self._result = await perform(cmd)  # type: ignore[arg-type]
            except Exception as exc:
                self._error = exc
            cmd = self._advance()
        return None if cmd is None else cmd.target


def _closer(stream: Any, name: str) -> Callable[[], Any] | None:
    """The stream's ``close``/``aclose``: LiteLLM's wrapper closes its provider stream."""
    for target in (getattr(stream, "completion_stream", None), stream):
        method = getattr(target, name, None)
        if callable(method):
            return method
    return None


def perform(cmd: Cmd) -> Any:
    """Do one step in this thread."""
    kind = cmd.kind
    if kind == "next":
        return next(cmd.target, END)
    if kind == "publish":
        return cmd.target.publish()
    if kind == "call":
        return cmd.target(*cmd.args, **cmd.kwargs)
    if kind == "complete":
        return llm.complete(cmd.target)
    if kind == "follow":
        from .double_texting import queue_next, start_run

        if queue_next(session=cmd.target):
            start_run(session=cmd.target)
        return None
    if kind == "open":
        return llm.open_stream(cmd.target)
    if kind == "iter":
        return iter(cmd.target)
    if kind == "close" and (close := _closer(cmd.target, "close")):
        with contextlib.suppress(Exception):
            close()
    return None


_db_pool: tuple[int, ThreadPoolExecutor] | None = None
_db_pool_lock = threading.Lock()


def db_threads() -> int:
    """How many threads run this process's async database steps (``CHATMODEL_DB_THREADS``)."""
    threads = conf.DB_THREADS
    if threads is None:
        threads = 1 if connections["default"].vendor == "sqlite" else 8
    return max(1, threads)


def _db_executor() -> ThreadPoolExecutor | None:
    """This process's database threads, or None to use the thread Django's ``sync_to_async`` shares."""
    global _db_pool
    if db_threads() <= 1:
        return None
    with _db_pool_lock:
        # A forked worker starts its own threads (the parent's do not exist in the child).
        if _db_pool is None or _db_pool[0] != os.getpid():
            _db_pool = (os.getpid(), ThreadPoolExecutor(db_threads(), thread_name_prefix="chatmodel-db"))
        return _db_pool[1]


def db_threads_stop() -> None:
    """Close each database thread's connection and stop the threads (a test's teardown, or a worker's shutdown)."""
    global _db_pool
    with _db_pool_lock:
        pool, _db_pool = _db_pool, None
    if pool is None or pool[0] != os.getpid():
        return
    executor = pool[1]
    threads = executor._max_workers
    # One task per thread, held at a barrier until every thread has one, so each closes its own connection.
    barrier = threading.Barrier(threads)

    def close_own() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connections.close_all()

    for _ in range(threads):
        executor.submit(close_own)
    executor.shutdown(wait=True)


def _in_db_thread(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return fn(*args, **kwargs)
    finally:
        # Each thread keeps its connection between steps; one an error may have broken is dropped (a new one,
        # or one from the pool, is opened on the next query), as Django does at the end of a request.
        if connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()


async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run the blocking database step ``fn`` from async code.

    On SQLite (one writer at a time) on the thread Django's ``sync_to_async`` shares; elsewhere on one of
    this process's database threads, so one run's queries do not wait behind every other run's.
    """
    executor = _db_executor()
    if executor is None:
        return await sync_to_async(fn)(*args, **kwargs)
    return await sync_to_async(_in_db_thread, thread_sensitive=False, executor=executor)(fn, args, kwargs)


async def aperform(cmd: Cmd) -> Any:
    """Do one step, awaiting it."""
    kind = cmd.kind
    if kind == "next":
        return await anext(cmd.target, END)
    if kind == "publish":
        return await cmd.target.apublish()
    if kind == "call":
        return await db(cmd.target, *cmd.args, **cmd.kwargs)
    if kind == "complete":
        return await llm.acomplete(cmd.target)
    if kind == "follow":
        from .double_texting import astart_run, queue_next

        if await db(queue_next, session=cmd.target):
            astart_run(session=cmd.target)
        return None
    if kind == "open":
        return await llm.aopen_stream(cmd.target)
    if kind == "iter":
        return aiter(cmd.target)
    if kind == "close" and (aclose := _closer(cmd.target, "aclose")):
        with contextlib.suppress(Exception):
            await aclose()
    return None

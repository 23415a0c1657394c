"""The ``ChatModel`` methods of branches, for each transport (mixed into both): regenerate, edit, switch, fork.

``OrmBranches`` calls ``services.branches`` in this process; ``HttpBranches`` the REST API
(``POST /api/sessions/<uuid>/regenerate/``, ``.../messages/<seq>/edit/``, ``.../messages/<seq>/switch/``,
``.../fork/``, ``GET .../path/``). Regenerate and edit answer like ``run``: they never raise (a busy
session is an error response); switch, fork and path raise ``ChatModelError`` subclasses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..types import LLMResponse, LLMStreamResponse


class OrmBranches:
    """For ``OrmTransport``."""

    def _branch_session(self) -> Any:
        from ..exceptions import SessionNotFound

        session = self._existing_session()  # type: ignore[attr-defined]
        if session is None:
            raise SessionNotFound(f"No session {self.session_uuid}: add messages first.")  # type: ignore[attr-defined]
        return session

    def _change_then_run(self, change: Any, run: dict[str, Any], stream: bool) -> Any:
        from .. import services

        try:
            session = self._branch_session()
            change(session)
        except Exception as exc:
            return services.error_response(exc, stream=stream)
        if stream:
            return services.run_stream(session=session, **run)
        return services.run(session=session, **run)

    def regenerate(self, *, run: dict[str, Any], stream: bool, double_texting: Any) -> Any:
        from ..services import branches

        return self._answer(
            lambda s: branches.regenerate_prepare(session=s, double_texting=double_texting), run, stream
        )

    def edit_message(
        self, seq: Any, content: Any, *, run: dict[str, Any] | None, stream: bool, double_texting: Any
    ) -> Any:
        from ..services import branches

        def change(session: Any) -> None:
            branches.message_edit(session=session, seq=seq, content=content, double_texting=double_texting)

        if run is None:
            from .orm import _blocking

            _blocking(lambda: change(self._branch_session()))
            return self.get_path()
        return self._answer(change, run, stream)

    def _answer(self, change: Any, run: dict[str, Any], stream: bool) -> Any:
        from .orm import _blocking, _blocking_iter, _in_event_loop

        if not stream:
            return _blocking(self._change_then_run, change, run, False)

        def chunks() -> Iterator[LLMStreamResponse]:
            result = self._change_then_run(change, run, True)
            if isinstance(result, LLMResponse):
                yield result  # type: ignore[misc]
            else:
                yield from result

        return _blocking_iter(chunks()) if _in_event_loop() else chunks()

    def switch_branch(self, seq: Any, index: Any) -> list[dict[str, Any]]:
        from ..services import branches
        from .orm import _blocking

        _blocking(lambda: branches.branch_switch(session=self._branch_session(), seq=seq, index=index))
        return self.get_path()

    def get_path(self) -> list[dict[str, Any]]:
        from .orm import _blocking

        return _blocking(self._get_path)

    def _get_path(self) -> list[dict[str, Any]]:
        from ..selectors import session_messages
        from ..services import branches

        session = self._branch_session()
        return branches.messages_with_alternatives(session=session, messages=list(session_messages(session=session)))

    def fork(self, seq: Any) -> str:
        from ..services import branches
        from .orm import _blocking

        def do() -> str:
            new = branches.session_fork(session=self._branch_session(), seq=seq, user=getattr(self, "user", None))
            return str(new.uuid)

        return _blocking(do)


class HttpBranches:
    """For ``HttpTransport``."""

    def _branch_request(self, tail: str, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        headers = {"Accept": "text/event-stream"} if stream else None
        return {
            "method": "POST",
            "url": self._session_path(tail),  # type: ignore[attr-defined]
            "json": {**body, "stream": stream},
            "headers": headers,
        }

    def _branch_answer(self, request: dict[str, Any], stream: bool) -> Any:
        from .http import StreamRun

        if not stream:
            return self._drive(self._answer_steps(request))  # type: ignore[attr-defined]

        def chunks() -> Iterator[LLMStreamResponse]:
            reader = StreamRun(self.session_uuid, self.base_url)  # type: ignore[attr-defined]
            with contextlib.closing(self._events(request)) as items:  # type: ignore[attr-defined]
                for item in items:
                    if (chunk := reader.feed(item)) is not None:
                        yield chunk
                        if chunk.is_final:
                            return

        return chunks()

    def _answer_steps(self, request: dict[str, Any]) -> Any:
        import httpx

        from ..exceptions import ChatModelError
        from .http import _transport_error, response_from_http

        try:
            yield from self._session_steps()  # type: ignore[attr-defined]
            response = yield request
        except ChatModelError as exc:
            return LLMResponse(error=True, error_code=exc.code, error_log=str(exc), session_uuid=self.session_uuid)  # type: ignore[attr-defined]
        except httpx.HTTPError as exc:
            code, log = _transport_error(exc, self.base_url)  # type: ignore[attr-defined]
            return LLMResponse(error=True, error_code=code, error_log=log, session_uuid=self.session_uuid)  # type: ignore[attr-defined]
        return response_from_http(response)

    @staticmethod
    def _run_body(run: dict[str, Any], double_texting: Any) -> dict[str, Any]:
        body: dict[str, Any] = dict(run.get("params") or {})
        for key in ("functions", "tools"):
            if run.get(key) is not None:
                body[key] = run[key]
        if double_texting is not None:
            body["double_texting"] = double_texting
        return body

    def regenerate(self, *, run: dict[str, Any], stream: bool, double_texting: Any) -> Any:
        return self._branch_answer(
            self._branch_request("regenerate/", self._run_body(run, double_texting), stream), stream
        )

    def edit_message(
        self, seq: Any, content: Any, *, run: dict[str, Any] | None, stream: bool, double_texting: Any
    ) -> Any:
        body = {**self._run_body(run or {}, double_texting), "content": content, "run": run is not None}
        request = self._branch_request(f"messages/{int(seq)}/edit/", body, stream and run is not None)
        if run is None:
            return self._json_call(request)["messages"]
        return self._branch_answer(request, stream)

    def _json_call(self, request: dict[str, Any]) -> Any:
        return self._drive(self._json_steps(request))  # type: ignore[attr-defined]

    def _json_steps(self, request: dict[str, Any]) -> Any:
        import httpx

        from .http import _connection_error, _raise_for

        yield from self._session_steps()  # type: ignore[attr-defined]
        try:
            response = yield request
        except httpx.HTTPError as exc:
            raise _connection_error(exc, self.base_url) from exc  # type: ignore[attr-defined]
        return _raise_for(response)

    def switch_branch(self, seq: Any, index: Any) -> list[dict[str, Any]]:
        request = {
            "method": "POST",
            "url": self._session_path(f"messages/{int(seq)}/switch/"),  # type: ignore[attr-defined]
            "json": {"index": index},
        }
        return self._json_call(request)["messages"]

    def get_path(self) -> list[dict[str, Any]]:
        return self._json_call({"method": "GET", "url": self._session_path("path/")})["messages"]  # type: ignore[attr-defined]

    def fork(self, seq: Any) -> str:
        request = {"method": "POST", "url": self._session_path("fork/"), "json": {"seq": seq}}  # type: ignore[attr-defined]
        return str(self._json_call(request)["session"]["uuid"])

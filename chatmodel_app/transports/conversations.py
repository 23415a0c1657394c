"""The ``ChatModel`` methods of named conversations and feedback, for each transport (mixed into both).

``OrmConversations`` calls ``services.conversations`` and ``services.feedback`` in this process;
``HttpConversations`` calls the REST API (``PATCH``/``DELETE /api/sessions/<uuid>/``,
``PUT``/``DELETE .../messages/<seq>/feedback/``). Both raise ``ChatModelError`` subclasses, never
return error values: these are not model runs. Importing this module imports neither Django nor httpx.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

UNSET: Any = object()
# The keys ``get_session`` gives, whichever the transport.
SESSION_KEYS = ("uuid", "chat_model", "version", "title", "title_source", "archived", "archived_at", "last_activity_at")


class OrmConversations:
    """For ``OrmTransport``: the session must exist (it is created by the first ``add_messages``)."""

    def _session_required(self) -> Any:
        from ..exceptions import SessionNotFound

        session = self._existing_session()  # type: ignore[attr-defined]
        if session is None:
            raise SessionNotFound(f"No session {self.session_uuid}: add messages first.")  # type: ignore[attr-defined]
        return session

    def get_session(self) -> dict[str, Any]:
        from .orm import _blocking

        return _blocking(self._get_session)

    def _get_session(self) -> dict[str, Any]:
        from ..selectors import session_get
        from ..services.conversations import conversation_json

        session = session_get(session_uuid=self._session_required().uuid)
        return {
            "uuid": str(session.uuid),
            "chat_model": session.chat_model.name,
            "version": session.version.number,
            **conversation_json(session),
        }

    def feedback(self, seq: Any, rating: Any, comment: Any) -> dict[str, Any] | None:
        from .orm import _blocking

        return _blocking(self._feedback, seq, rating, comment)

    def _feedback(self, seq: Any, rating: Any, comment: Any) -> dict[str, Any] | None:
        from ..services import feedback

        session = self._session_required()
        if rating is None:
            feedback.feedback_delete(session=session, seq=seq)
            return None
        user = getattr(self, "user", None)
        stored = feedback.feedback_set(session=session, seq=seq, rating=rating, comment=comment, user=user)
        return feedback.feedback_json(stored)

    def update_session(self, **fields: Any) -> dict[str, Any]:
        from .orm import _blocking

        return _blocking(self._update_session, fields)

    def _update_session(self, fields: dict[str, Any]) -> dict[str, Any]:
        from ..services.conversations import conversation_update

        conversation_update(session=self._session_required(), **fields)
        return self._get_session()

    def delete_session(self) -> None:
        from .orm import _blocking

        _blocking(self._delete_session)

    def _delete_session(self) -> None:
        from ..services.conversations import conversation_delete

        conversation_delete(session=self._session_required())
        setattr(self, "_session", None)  # noqa: B010  (OrmTransport's attribute: a later use creates a new session)


class HttpConversations:
    """For ``HttpTransport``: each method is one REST call (the session must exist on the server)."""

    def _call_steps(self, method: str, tail: str, body: Any = None) -> Generator[Any, Any, Any]:
        import httpx

        from .http import _connection_error, _json, _raise_for

        request: dict[str, Any] = {"method": method, "url": self._session_path(tail)}  # type: ignore[attr-defined]
        if body is not None:
            request["json"] = body
        try:
            response = yield request
        except httpx.HTTPError as exc:
            raise _connection_error(exc, self.base_url) from exc  # type: ignore[attr-defined]
        if response.status_code == 204:
            return None
        code = response.headers.get("Chatmodel-Error-Code")
        if not response.is_success and code and response.status_code == 400:
            # Field errors keep DRF's shape; the header names their code, as the other doors give it.
            from ..exceptions import exception_for_code

            body_json = _json(response) or {}
            message = "; ".join(
                f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body_json.items()
            )
            cls = exception_for_code(code)
            if cls is not None:
                raise cls(f"HTTP 400: {message}", code=code)
        return _raise_for(response)

    def get_session(self) -> dict[str, Any]:
        body = self._drive(self._call_steps("GET", ""))  # type: ignore[attr-defined]
        return {key: body.get(key) for key in SESSION_KEYS}

    def feedback(self, seq: Any, rating: Any, comment: Any) -> dict[str, Any] | None:
        tail = f"messages/{seq}/feedback/"
        if rating is None:
            self._drive(self._call_steps("DELETE", tail))  # type: ignore[attr-defined]
            return None
        body = self._drive(self._call_steps("PUT", tail, {"rating": rating, "comment": comment}))  # type: ignore[attr-defined]
        return body.get("feedback")

    def update_session(self, **fields: Any) -> dict[str, Any]:
        body = self._drive(self._call_steps("PATCH", "", fields))  # type: ignore[attr-defined]
        return {key: body.get(key) for key in SESSION_KEYS}

    def delete_session(self) -> None:
        self._drive(self._call_steps("DELETE", ""))  # type: ignore[attr-defined]
        self._session_exists = False

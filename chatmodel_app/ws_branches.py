"""The websocket frames of branches, mixed into ``consumers.SessionConsumer``: regenerate, edit_message,
switch_branch, get_path. Each only translates to ``services.branches``; every socket on the session gets
``session.path_changed`` from the pipeline, and the socket that asked gets ``session.path`` (the new path)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from .conf import conf

# Socket-local event: the current path (its newest messages, each with "alternatives").
PATH = "session.path"
# Frame keys that are the branch request's own, not run parameters.
_OWN = frozenset({"double_texting", "seq", "content", "run", "index"})


class BranchFrames:
    """``regenerate`` / ``edit_message`` (then a run, as the ``run`` frame), ``switch_branch``, ``get_path``."""

    async def on_regenerate(self, content: dict[str, Any], request_id: Any) -> None:
        """Answer the last user message again; the old reply stays as an alternative."""
        from .services import branches

        await database_sync_to_async(branches.regenerate_prepare)(
            session=self.joined,  # type: ignore[attr-defined]
            double_texting=content.get("double_texting"),
        )
        await self._run_after(content, request_id)

    async def on_edit_message(self, content: dict[str, Any], request_id: Any) -> None:
        """Store a new version of user message ``seq`` on a new branch, then run (unless ``run`` is false)."""
        from .services import branches

        await database_sync_to_async(branches.message_edit)(
            session=self.joined,  # type: ignore[attr-defined]
            seq=content.get("seq"),
            content=content.get("content"),
            double_texting=content.get("double_texting"),
        )
        if content.get("run", True) is False:
            await self.on_get_path(content, request_id)
            return
        await self._run_after(content, request_id)

    async def on_switch_branch(self, content: dict[str, Any], request_id: Any) -> None:
        """Show alternative ``index`` of message ``seq``; this socket gets the new path."""
        from .services import branches

        await database_sync_to_async(branches.branch_switch)(
            session=self.joined,  # type: ignore[attr-defined]
            seq=content.get("seq"),
            index=content.get("index"),
        )
        await self.on_get_path(content, request_id)

    async def on_get_path(self, content: dict[str, Any], request_id: Any) -> None:
        """Send ``session.path``: the newest messages of the current path, each with ``alternatives``."""

        upto, body = await database_sync_to_async(_path_snapshot)(self.joined)  # type: ignore[attr-defined]
        await self.send_local(  # type: ignore[attr-defined]
            PATH, request_id=request_id, messages=body["messages"], has_more=body["has_more"], stored_upto=upto
        )

    async def _run_after(self, content: dict[str, Any], request_id: Any) -> None:
        run = {k: v for k, v in content.items() if k not in _OWN}
        await self.on_run(run, request_id)  # type: ignore[attr-defined]


def _path_snapshot(session: Any) -> tuple[int, dict[str, Any]]:
    """The highest seq stored when the path was read, and the path: a client keeps the messages it has of a
    higher seq (stored after this read: the path may reach it after newer events did) and drops the rest."""
    from .api.branches import path_json
    from .models import Session

    # Read first: a message stored between the two reads has a higher seq, so the client keeps it.
    next_seq = Session.objects.filter(pk=session.pk).values_list("next_seq", flat=True).get()
    return next_seq - 1, path_json(session, conf.API_PAGE_SIZE)

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
        from .api.branches import path_json

        body = await database_sync_to_async(path_json)(self.joined, conf.API_PAGE_SIZE)  # type: ignore[attr-defined]
        await self.send_local(PATH, request_id=request_id, messages=body["messages"], has_more=body["has_more"])  # type: ignore[attr-defined]

    async def _run_after(self, content: dict[str, Any], request_id: Any) -> None:
        run = {k: v for k, v in content.items() if k not in _OWN}
        await self.on_run(run, request_id)  # type: ignore[attr-defined]

"""An in-memory channel layer whose cost per message does not grow with the number of sockets.

Channels' ``InMemoryChannelLayer`` sweeps for expired messages and group memberships on every
``receive`` and every ``group_send``: a walk over every channel and every membership of the
process. Each socket waits in ``receive`` and calls it again after every event it is given, so
one delivered event costs O(sockets) and a burst of N streams O(N²) (docs/bench.md). This
layer sweeps at most once a second (messages expire after 60 s, so they go at most a second
later) and sends to a group's channels directly instead of through a task each::

    CHANNEL_LAYERS = {"default": {"BACKEND": "chatmodel_app.layers.InMemoryChannelLayer"}}

Like Channels' layer it serves one process only; across processes use Redis.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as _ChannelsInMemoryChannelLayer

__all__ = ["InMemoryChannelLayer"]


class InMemoryChannelLayer(_ChannelsInMemoryChannelLayer):
    """Channels' in-memory layer with its expiry sweep at most once every ``sweep_interval`` seconds."""

    sweep_interval = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval
        super()._clean_expired()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):
            # As Channels does: a full channel misses the message.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)

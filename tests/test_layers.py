"""chatmodel_app.layers.InMemoryChannelLayer: Channels' in-memory layer, with its expiry sweep at most once a second."""

from __future__ import annotations

import asyncio

import pytest

from chatmodel_app.layers import InMemoryChannelLayer


def test_group_send_reaches_every_member_and_only_them():
    async def scenario():
        layer = InMemoryChannelLayer()
        a, b, c = [await layer.new_channel() for _ in range(3)]
        await layer.group_add("session.1", a)
        await layer.group_add("session.1", b)
        await layer.group_add("session.2", c)
        await layer.group_send("session.1", {"type": "chatmodel.event", "n": 1})
        got = [await asyncio.wait_for(layer.receive(ch), 1) for ch in (a, b)]
        assert got == [{"type": "chatmodel.event", "n": 1}] * 2
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(c), 0.1)
        # Each member gets its own copy, as with Channels' layer.
        await layer.group_send("session.1", {"type": "x", "items": [1]})
        first = await layer.receive(a)
        first["items"].append(2)
        assert (await layer.receive(b))["items"] == [1]

    asyncio.run(scenario())


def test_a_full_channel_misses_the_message_and_the_others_still_get_it():
    async def scenario():
        layer = InMemoryChannelLayer(capacity=1)
        full, free = await layer.new_channel(), await layer.new_channel()
        for ch in (full, free):
            await layer.group_add("g", ch)
        await layer.send(full, {"type": "filler"})
        await layer.group_send("g", {"type": "event"})
        assert await layer.receive(free) == {"type": "event"}
        assert await layer.receive(full) == {"type": "filler"}

    asyncio.run(scenario())


def test_expired_messages_and_their_members_still_go_at_the_next_sweep(monkeypatch):
    async def scenario():
        layer = InMemoryChannelLayer(expiry=0.01)
        stale, live = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("g", stale)
        await layer.group_add("g", live)
        await layer.send(stale, {"type": "old"})
        await asyncio.sleep(0.05)
        layer._next_sweep = 0.0  # the next second has come
        await layer.group_send("g", {"type": "new"})
        # The stale channel's expired message was dropped, and with it its group membership (Channels' rule).
        assert stale not in layer.groups["g"] and live in layer.groups["g"]
        assert await layer.receive(live) == {"type": "new"}

    asyncio.run(scenario())


def test_the_sweep_runs_at_most_once_a_second_however_many_messages(monkeypatch):
    calls = []
    original = InMemoryChannelLayer.__mro__[1]._clean_expired
    monkeypatch.setattr(
        InMemoryChannelLayer.__mro__[1], "_clean_expired", lambda self: calls.append(1) or original(self)
    )

    async def scenario():
        layer = InMemoryChannelLayer()
        channels = [await layer.new_channel() for _ in range(50)]
        for ch in channels:
            await layer.group_add("g", ch)
        for _ in range(20):
            await layer.group_send("g", {"type": "e"})
            for ch in channels:
                await layer.receive(ch)

    asyncio.run(scenario())
    # 20 group sends and 1,000 receives in well under a second: one sweep, not 1,020.
    assert len(calls) == 1

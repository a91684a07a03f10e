"""A Janus VideoRoom as a :class:`RoomSource` (over :mod:`framecrypt.webrtc.janus`).

The recorder joins the room as a member that never publishes, subscribes to every
publisher already there and to each one that appears later (one subscriber peer
connection per feed, as the VideoRoom API has it), and taps each receiver: the
reassembled sealed frame and its RTP timestamp go to the recorder, nothing is decoded.
Participants are named by their Janus ``display`` (which is also how the recorder
finds their keys). A publisher that unpublishes or leaves is reported to the recorder
(its file is finished at once); the room ends when Janus destroys it or the session is
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from .errors import RoomUnreachable
from .source import FrameSink
from .taps import TappedSource

if TYPE_CHECKING:
    from framecrypt.webrtc.janus import (
        JanusRoom,
        Publisher,
        RoomOptions,
        Stream,
        Subscription,
    )


class JanusSource(TappedSource):
    """Subscribe to every publisher of VideoRoom ``room_id`` at ``url``
    (``ws://host:port``). ``ice_address``: the local address to offer ICE candidates
    on (a private Janus's); ``create``: create the room first (the demo)."""

    kind = "janus"

    def __init__(self, url: str, room_id: int, *, display: str = "recorder",
                 ice_address: str | None = None, create: RoomOptions | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__()
        self.url = url
        self.room_id = room_id
        self.address = f"{url} room {room_id}"
        self.display = display
        self.ice_address = ice_address
        self.create = create
        self.timeout = timeout
        self.room: JanusRoom | None = None
        self.feeds: dict[int, str] = {}  # feed id -> display, while publishing
        self.feeds_seen: dict[int, str] = {}  # every feed subscribed to
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._sink: FrameSink | None = None
        self._subs: dict[int, Subscription] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"JanusSource({self.url!r}, room={self.room_id}, feeds={len(self.feeds)})"

    async def start(self, sink: FrameSink) -> None:
        from framecrypt.webrtc.janus import JanusError, JanusRoom

        self._sink = sink
        try:
            self.room = room = await self._stack.enter_async_context(JanusRoom.connect(
                self.url, self.room_id, display=self.display, create=self.create,
                ice_address=self.ice_address, timeout=self.timeout))
        except (JanusError, OSError) as e:
            raise RoomUnreachable(f"janus {self.address}: {type(e).__name__}") from None
        original = room.handle.on_event

        def on_event(pm: Any) -> None:  # the room's own events, plus "destroyed"
            if original is not None:
                original(pm)
            if pm.data.get("videoroom") == "destroyed":
                self._end("room destroyed")

        room.handle.on_event = on_event
        for pub in list(room.publishers.values()):
            await self._subscribe(pub)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        from framecrypt.webrtc.janus import (
            JanusClosed,
            JanusError,
            JanusTimeout,
            PublisherJoined,
            PublisherLeft,
        )

        room = self.room
        assert room is not None and self._sink is not None
        while True:
            try:
                ev = await room.next_event(timeout=3600)
            except JanusTimeout:
                continue
            except JanusClosed:
                self._end("janus session closed")
                return
            if isinstance(ev, PublisherJoined):
                try:
                    await self._subscribe(ev.publisher)
                except JanusError:
                    continue  # gone again before we subscribed
            elif isinstance(ev, PublisherLeft):
                name = self.feeds.pop(ev.id, None)
                if name is not None:
                    self._detach(name)
                    self._sink.on_left(name)
                    sub = self._subs.pop(ev.id, None)
                    if sub is not None:  # its frames are dropped already; free the pc
                        task = asyncio.create_task(self._close_sub(sub))
                        self._closing.add(task)
                        task.add_done_callback(self._closing.discard)

    async def _subscribe(self, pub: Publisher) -> None:
        room = self.room
        if room is None or pub.id in self.feeds or not pub.streams:
            return
        self.feeds[pub.id] = self.feeds_seen[pub.id] = pub.display
        sink = self._sink
        assert sink is not None

        def prepare(tr: Any, stream: Stream) -> None:
            if stream.type in ("video", "audio"):
                self._attach(tr.receiver, sink, pub.display, stream.type)

        self._subs[pub.id] = await room.subscribe(pub.id, prepare=prepare)

    async def _close_sub(self, sub: Subscription) -> None:
        room = self.room
        with contextlib.suppress(Exception):
            await sub.close()
        if room is not None and sub in room.subscriptions:
            room.subscriptions.remove(sub)

    async def close(self) -> None:
        self._end("left")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._stack.aclose()

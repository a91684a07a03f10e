"""A Janus VideoRoom client for Python members of an E2EE room (aiortc peers).

Janus's VideoRoom is an SFU: every member publishes on one ``RTCPeerConnection`` to
Janus and subscribes to other members' feeds on others; Janus forwards RTP without
reading payloads. Sealing and opening stay where they are in any aiortc peer
(:func:`framecrypt.webrtc.attach_sender` / :func:`~framecrypt.webrtc.attach_receiver`);
this module only talks to Janus (over WebSocket, :mod:`framecrypt.webrtc.janus_api`).

```python
async with JanusRoom.connect("ws://127.0.0.1:8188", 1234, display="alice",
                             create=RoomOptions(record=True, rec_dir="/tmp/rec")) as room:
    pc = RTCPeerConnection(local_configuration())
    t = pc.addTransceiver(video_track, "sendonly"); prefer_codecs(t, "vp8")
    attach_sender(t.sender, pool, "alice")
    me = await room.publish(pc)                         # offer -> Janus -> answer
    bob = await room.wait_for_publisher("bob")          # or room.publishers / next_event()
    sub = await room.subscribe(bob.id, prepare=lambda tr, s: attach_receiver(
        tr.receiver, pool, "alice<-bob"))               # Janus offers, we answer
    await sub.configure(substream=0)                    # simulcast layer (when published)
```

Errors are typed (:mod:`framecrypt.webrtc.errors`): :class:`JanusError` carries the
VideoRoom's error code (426 no such room, 427 room exists, 428 no such feed, ...).
Every request is bounded by ``timeout``; malformed or hostile replies raise
:class:`JanusProtocolError`; a lost connection fails pending requests with
:class:`JanusClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import JanusClosed, JanusError, JanusProtocolError, JanusTimeout
from .janus_api import Handle, JanusSession, PluginMessage, integer, obj

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection, RTCRtpTransceiver

__all__ = [
    "JanusClosed",
    "JanusError",
    "JanusProtocolError",
    "JanusRoom",
    "JanusTimeout",
    "Publication",
    "Publisher",
    "PublisherJoined",
    "PublisherLeft",
    "RoomOptions",
    "Stream",
    "Subscription",
]

VIDEOROOM = "janus.plugin.videoroom"
MAX_EVENTS = 1000  # room events kept for next_event(); older ones are dropped
MAX_PUBLISHERS = 4096  # a server announcing more is not a VideoRoom (memory bound)


@dataclass(frozen=True)
class RoomOptions:
    """Options of a VideoRoom ``create`` request. ``extra`` passes any other option of
    the VideoRoom API as is (e.g. ``{"fir_freq": 10, "notify_joining": True}``);
    simulcast needs nothing here (the publisher's SDP decides)."""

    videocodec: str = "vp8"
    audiocodec: str = "opus"
    publishers: int = 16
    bitrate: int = 0  # bit/s cap per publisher (0: none)
    record: bool = False
    rec_dir: str | None = None
    description: str = "framecrypt E2EE room"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def body(self, room: int) -> dict[str, Any]:
        b: dict[str, Any] = {"request": "create", "room": room, "permanent": False,
                             "description": self.description, "publishers": self.publishers,
                             "videocodec": self.videocodec, "audiocodec": self.audiocodec,
                             "bitrate": self.bitrate, "record": self.record}
        if self.rec_dir is not None:
            b["rec_dir"] = self.rec_dir
        b.update(self.extra)
        return b


@dataclass(frozen=True)
class Stream:
    """One media stream of a feed as Janus describes it."""

    type: str  # "video" / "audio" / "data"
    mid: str
    codec: str = ""
    feed_id: int = 0
    simulcast: bool = False
    disabled: bool = False


@dataclass(frozen=True)
class Publisher:
    """A member publishing in the room."""

    id: int
    display: str
    streams: tuple[Stream, ...] = ()


@dataclass(frozen=True)
class PublisherJoined:
    """A publisher appeared (or updated its streams)."""

    publisher: Publisher


@dataclass(frozen=True)
class PublisherLeft:
    """A publisher unpublished or left (``reason``: ``unpublished`` / ``leaving`` /
    ``kicked``)."""

    id: int
    reason: str


RoomEvent = PublisherJoined | PublisherLeft


@dataclass(frozen=True)
class Publication:
    """What :meth:`JanusRoom.publish` negotiated."""

    feed_id: int
    streams: tuple[Stream, ...]


def _streams(value: object, request: str, feed_id: int = 0) -> tuple[Stream, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise JanusProtocolError("streams is not a list", request)
    out = []
    for s in value:
        d = obj(s, "stream", request)
        kind = d.get("type")
        mid = d.get("mid")
        if not isinstance(kind, str) or not isinstance(mid, str):
            raise JanusProtocolError("stream without type/mid", request)
        fid = d.get("feed_id", feed_id)
        out.append(Stream(kind, mid, str(d.get("codec", "")),
                          fid if isinstance(fid, int) and not isinstance(fid, bool) else 0,
                          bool(d.get("simulcast", False)), bool(d.get("disabled", False))))
    return tuple(out)


def _publisher(value: object, request: str) -> Publisher:
    d = obj(value, "publisher", request)
    pid = integer(d, "id", "publisher", request)
    display = d.get("display", "")
    return Publisher(pid, display if isinstance(display, str) else "",
                     _streams(d.get("streams"), request, pid))


def _jsep(desc: Any) -> dict[str, Any]:
    # trickle false: aiortc puts every candidate in the SDP
    return {"type": desc.type, "sdp": desc.sdp, "trickle": False}


class Subscription:
    """One subscriber handle and its peer connection (Janus offers, we answer)."""

    def __init__(self, room: JanusRoom, handle: Handle, pc: RTCPeerConnection,
                 streams: tuple[Stream, ...]) -> None:
        self.room = room
        self.handle = handle
        self.pc = pc
        self.streams = streams

    def __repr__(self) -> str:
        return f"Subscription(handle={self.handle.id}, streams={len(self.streams)})"

    async def configure(self, *, substream: int | None = None, temporal: int | None = None,
                        mid: str | None = None, **extra: Any) -> None:
        """Pick a simulcast layer (``substream`` 0-2, ``temporal`` 0-2) of the stream
        ``mid`` (default: every video stream), or pass other ``configure`` options."""
        body: dict[str, Any] = {"request": "configure", **extra}
        for key, value in (("substream", substream), ("temporal", temporal), ("mid", mid)):
            if value is not None:
                body[key] = value
        await self.room._ok(self.handle, body, "configured")

    async def close(self) -> None:
        """Leave (bounded), detach and close the peer connection."""
        with contextlib.suppress(JanusError):
            await self.handle.message({"request": "leave"}, timeout=3)
        await self.handle.detach()
        await self.pc.close()


class JanusRoom:
    """A member of one VideoRoom room (see the module docstring).

    ``publishers`` is the live map of feed id → :class:`Publisher`; room events
    (:class:`PublisherJoined`, :class:`PublisherLeft`) are queued for
    :meth:`next_event` (the last :data:`MAX_EVENTS`).
    """

    def __init__(self, session: JanusSession, handle: Handle, room_id: int, display: str,
                 timeout: float, ice_address: str | None = None) -> None:
        self.session = session
        self.handle = handle
        self.room_id = room_id
        self.display = display
        self.timeout = timeout
        self.ice_address = ice_address
        self.feed_id = 0
        self.private_id: int | None = None
        self.publishers: dict[int, Publisher] = {}
        self.subscriptions: list[Subscription] = []
        self.publish_pc: RTCPeerConnection | None = None
        self._events: asyncio.Queue[RoomEvent | None] = asyncio.Queue()
        self._changed = asyncio.Event()
        handle.on_event = self._on_event
        session.on_closed = self._on_closed

    def __repr__(self) -> str:
        return (f"JanusRoom(room={self.room_id}, display={self.display!r}, "
                f"feed={self.feed_id}, publishers={len(self.publishers)})")

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, room_id: int, *, display: str = "",
                      create: RoomOptions | None = None, exist_ok: bool = True,
                      ice_address: str | None = None, timeout: float = 10.0,
                      keepalive_s: float = 25.0) -> AsyncIterator[JanusRoom]:
        """Open a session at ``url`` (``ws://host:port``), create the room first when
        ``create`` is given (an existing room is fine when ``exist_ok``), join as a
        publisher named ``display`` (not publishing yet: :meth:`publish`), and on exit
        leave, close every subscription and the session. ``ice_address``: offer ICE
        candidates on this local address only (a private Janus's ``ice_address``);
        default: aiortc's own gathering. ``timeout`` bounds every request;
        ``keepalive_s`` must stay below the server's ``session_timeout``."""
        session = await JanusSession.open(url, timeout=timeout, keepalive_s=keepalive_s)
        room: JanusRoom | None = None
        try:
            handle = await session.attach(VIDEOROOM)
            if create is not None:
                await create_room(handle, room_id, create, exist_ok=exist_ok)
            room = cls(session, handle, room_id, display, timeout, ice_address)
            await room._join()
            yield room
        finally:
            if room is not None:
                await room.close()
            await session.close()

    # --- joining, events -----------------------------------------------------------------

    async def _join(self) -> None:
        body = {"request": "join", "ptype": "publisher", "room": self.room_id,
                "display": self.display}
        pm = await self.handle.message(body, timeout=self.timeout)
        if pm.data.get("videoroom") != "joined":
            raise JanusProtocolError(f"join answered {pm.data.get('videoroom')!r}", "join")
        self.feed_id = integer(pm.data, "id", "joined", "join")
        pid = pm.data.get("private_id")
        self.private_id = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
        self._publishers_event(pm.data, "join")

    def _publishers_event(self, data: dict[str, Any], request: str) -> None:
        pubs = data.get("publishers")
        if pubs is None:
            return
        if not isinstance(pubs, list):
            raise JanusProtocolError("publishers is not a list", request)
        for p in pubs:
            pub = _publisher(p, request)
            if pub.id == self.feed_id:
                continue
            if pub.id not in self.publishers and len(self.publishers) >= MAX_PUBLISHERS:
                raise JanusProtocolError(f"more than {MAX_PUBLISHERS} publishers", request)
            self.publishers[pub.id] = pub
            self._push(PublisherJoined(pub))

    def _push(self, event: RoomEvent | None) -> None:
        if self._events.qsize() >= MAX_EVENTS:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._events.get_nowait()
        self._events.put_nowait(event)
        self._changed.set()

    def _on_event(self, pm: PluginMessage) -> None:
        data = pm.data
        try:
            self._publishers_event(data, "event")
        except JanusProtocolError:
            return  # a malformed event changes nothing
        for key in ("unpublished", "leaving", "kicked"):
            fid = data.get(key)
            if isinstance(fid, int) and not isinstance(fid, bool) and fid in self.publishers:
                del self.publishers[fid]
                self._push(PublisherLeft(fid, key))

    def _on_closed(self, reason: str) -> None:
        self._push(None)

    async def next_event(self, timeout: float | None = None) -> RoomEvent:
        """The next room event; :class:`JanusTimeout` after ``timeout`` (default: the
        room's), :class:`JanusClosed` once the session is gone."""
        limit = self.timeout if timeout is None else timeout
        if self.session.closed and self._events.empty():
            raise JanusClosed(self.session.close_reason or "session closed")
        try:
            async with asyncio.timeout(limit):
                event = await self._events.get()
        except TimeoutError as e:
            raise JanusTimeout("next_event", limit) from e
        if event is None:
            raise JanusClosed(self.session.close_reason or "session closed")
        return event

    async def wait_for_publisher(self, display: str, timeout: float | None = None
                                 ) -> Publisher:
        """The publisher named ``display`` once it publishes (bounded)."""
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    for p in self.publishers.values():
                        if p.display == display and p.streams:
                            return p
                    if self.session.closed:
                        raise JanusClosed(self.session.close_reason or "session closed")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError as e:
            raise JanusTimeout(f"wait_for_publisher {display!r}", limit) from e

    async def list_participants(self) -> list[dict[str, Any]]:
        """The room's participants (``listparticipants``: id, display, publisher)."""
        pm = await self.handle.request({"request": "listparticipants", "room": self.room_id},
                                       timeout=self.timeout)
        parts = pm.data.get("participants")
        if not isinstance(parts, list):
            raise JanusProtocolError("participants is not a list", "listparticipants")
        return [obj(p, "participant", "listparticipants") for p in parts]

    # --- publish / subscribe -------------------------------------------------------------

    async def _ok(self, handle: Handle, body: dict[str, Any], expect: str,
                  jsep: dict[str, Any] | None = None) -> PluginMessage:
        name = str(body["request"])
        pm = await handle.message(body, jsep, timeout=self.timeout)
        if expect == "configured" and pm.data.get("configured") != "ok":
            raise JanusProtocolError("configure not acknowledged", name)
        return pm

    def _restrict_ice(self, pc: RTCPeerConnection) -> None:
        if self.ice_address:
            from . import _aiortc_internals as _ai

            _ai.host_only(pc, (self.ice_address,))

    async def publish(self, pc: RTCPeerConnection, **options: Any) -> Publication:
        """Publish ``pc``'s send transceivers (add tracks and attach senders first): we
        offer, Janus answers. ``options`` go into the ``publish`` request (e.g.
        ``bitrate``, ``descriptions``)."""
        from aiortc import RTCSessionDescription

        self._restrict_ice(pc)
        await pc.setLocalDescription(await pc.createOffer())
        body = {"request": "publish", **options}
        pm = await self._ok(self.handle, body, "configured", _jsep(pc.localDescription))
        if pm.jsep is None or pm.jsep["type"] != "answer":
            raise JanusProtocolError("publish answered without an SDP answer", "publish")
        await pc.setRemoteDescription(RTCSessionDescription(pm.jsep["sdp"], "answer"))
        self.publish_pc = pc
        return Publication(self.feed_id, _streams(pm.data.get("streams"), "publish",
                                                  self.feed_id))

    async def unpublish(self) -> None:
        await self.handle.message({"request": "unpublish"}, timeout=self.timeout)

    async def subscribe(self, feed_id: int, streams: list[dict[str, Any]] | None = None, *,
                        pc: RTCPeerConnection | None = None,
                        prepare: Callable[[RTCRtpTransceiver, Stream], Any] | None = None
                        ) -> Subscription:
        """Subscribe to ``feed_id`` (``streams``: VideoRoom ``streams`` entries, default
        every stream of the feed) on ``pc`` (default: a new one with
        :func:`~framecrypt.webrtc.local_configuration`). Janus offers; ``prepare`` is
        called with each transceiver and its :class:`Stream` before we answer: attach
        receivers there."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from . import local_configuration

        handle = await self.session.attach(VIDEOROOM)
        own_pc = pc is None
        pc = pc if pc is not None else RTCPeerConnection(local_configuration())
        try:
            body: dict[str, Any] = {"request": "join", "ptype": "subscriber",
                                    "room": self.room_id,
                                    "streams": streams or [{"feed": feed_id}]}
            if self.private_id is not None:
                body["private_id"] = self.private_id
            pm = await handle.message(body, timeout=self.timeout)
            if pm.data.get("videoroom") != "attached" or pm.jsep is None \
                    or pm.jsep["type"] != "offer":
                raise JanusProtocolError("subscriber join without an SDP offer", "join")
            desc = _streams(pm.data.get("streams"), "join", feed_id)
            await pc.setRemoteDescription(RTCSessionDescription(pm.jsep["sdp"], "offer"))
            by_mid = {s.mid: s for s in desc}
            for tr in pc.getTransceivers():
                s = by_mid.get(str(tr.mid))
                if s is not None and prepare is not None:
                    prepare(tr, s)
            self._restrict_ice(pc)
            await pc.setLocalDescription(await pc.createAnswer())
            pm = await handle.message({"request": "start"}, _jsep(pc.localDescription),
                                      timeout=self.timeout)
            if pm.data.get("started") != "ok":
                raise JanusProtocolError("start not acknowledged", "start")
        except BaseException:
            await handle.detach()
            if own_pc:
                await pc.close()
            raise
        sub = Subscription(self, handle, pc, desc)
        self.subscriptions.append(sub)
        return sub

    async def close(self) -> None:
        """Close every subscription, leave the room (bounded); the session stays."""
        subs, self.subscriptions = self.subscriptions, []
        await asyncio.gather(*(s.close() for s in subs), return_exceptions=True)
        if not self.session.closed:
            with contextlib.suppress(JanusError):
                await self.handle.message({"request": "leave"}, timeout=3)
        if self.publish_pc is not None:
            await self.publish_pc.close()
            self.publish_pc = None


async def create_room(handle: Handle, room_id: int, options: RoomOptions, *,
                      exist_ok: bool = True) -> None:
    """Create VideoRoom ``room_id`` on ``handle`` (427, room exists, is fine when
    ``exist_ok``)."""
    try:
        pm = await handle.request(options.body(room_id))
    except JanusError as e:
        if exist_ok and e.code == 427:
            return
        raise
    if pm.data.get("videoroom") != "created":
        raise JanusProtocolError(f"create answered {pm.data.get('videoroom')!r}", "create")


async def destroy_room(handle: Handle, room_id: int) -> None:
    await handle.request({"request": "destroy", "room": room_id})

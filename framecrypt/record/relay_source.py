"""The demo's relay (:mod:`framecrypt.demo.relay`) as a :class:`RoomSource`.

The recorder joins like any participant that does not send: one offer with a recvonly
video + audio slot per sender of the relay's roster, in roster order. Each receiver
gets a tap instead of a decoder (:func:`framecrypt.webrtc._aiortc_internals.install_tap`):
the reassembled sealed frame and its RTP timestamp go to the recorder, nothing is
decoded. A control connection stays open to the relay; when the relay closes it (or
the peer connection fails) the room has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence

from aiortc import RTCPeerConnection, RTCSessionDescription

from framecrypt.webrtc import local_configuration, loopback_only, prefer_codecs

from .errors import RoomUnreachable
from .source import KINDS, FrameSink
from .taps import TappedSource

JOIN_TIMEOUT_S = 20.0


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"relay address must be HOST:PORT, got {address!r}")
    return host or "127.0.0.1", int(port)


class RelaySource(TappedSource):
    """Subscribe to every sender of the relay at ``address`` (``HOST:PORT``);
    ``room`` is the relay's roster (its ``--senders``), ``name`` the recorder's
    name at the relay."""

    kind = "relay"

    def __init__(self, address: str, room: Sequence[str], name: str = "recorder") -> None:
        super().__init__()
        self.address = address
        self.host, self.port = parse_address(address)
        self.room = list(room)
        if not self.room:
            raise ValueError("the relay's roster is empty")
        self.name = name
        self.pc: RTCPeerConnection | None = None
        self._control: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._watch: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"RelaySource({self.address!r}, room={self.room!r})"

    async def start(self, sink: FrameSink) -> None:
        pc = self.pc = RTCPeerConnection(local_configuration())
        for sender in self.room:
            for kind in KINDS:
                t = pc.addTransceiver(kind, "recvonly")
                prefer_codecs(t)
                self._attach(t.receiver, sink, sender, kind)

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._end(f"connection {pc.connectionState}")

        loopback_only(pc)
        await pc.setLocalDescription(await pc.createOffer())
        desc = pc.localDescription
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), JOIN_TIMEOUT_S)
            self._control = (reader, writer)
            writer.write(json.dumps({"op": "join", "name": self.name, "sends": False,
                                     "offer": {"sdp": desc.sdp, "type": desc.type}}
                                    ).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), JOIN_TIMEOUT_S)
        except (OSError, TimeoutError) as e:
            raise RoomUnreachable(f"relay {self.address}: {type(e).__name__}") from None
        if not line:
            raise RoomUnreachable(f"relay {self.address} closed the connection")
        reply = json.loads(line)
        if "answer" not in reply:
            raise RoomUnreachable(f"relay {self.address}: {reply.get('error', 'no answer')}")
        answer = reply["answer"]
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        self._watch = asyncio.create_task(self._watch_control(reader))

    async def _watch_control(self, reader: asyncio.StreamReader) -> None:
        """The relay keeps the join connection open; EOF means it shut down."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.readline():
                pass
        self._end("relay closed")

    async def close(self) -> None:
        self._end("left")
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._control is not None:
            self._control[1].close()
        if self.pc is not None:
            await self.pc.close()

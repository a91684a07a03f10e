"""What a room looks like to the recorder: a :class:`RoomSource` delivers every
publisher's reassembled, still sealed, encoded frames (with their RTP timestamps) to
a :class:`FrameSink`, and forwards keyframe requests back to the publishers.

A source knows how to join one kind of room (the demo's relay:
:class:`framecrypt.record.relay_source.RelaySource`; a Janus VideoRoom). It never sees
keys: frames are opened by the recorder, in the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

KINDS = ("video", "audio")
CLOCK_RATES = {"vp8": 90000, "h264": 90000, "opus": 48000}


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One whole encoded frame as the room delivered it (sealed)."""

    participant: str
    kind: str  # "video" | "audio"
    codec: str  # "vp8" | "h264" | "opus"
    data: bytes
    timestamp: int  # RTP timestamp (32 bits, the codec's clock)
    arrival: float  # time.monotonic() when it was reassembled

    def __repr__(self) -> str:  # no payload bytes in logs
        return (f"EncodedFrame({self.participant!r}, {self.kind}, {self.codec}, "
                f"{len(self.data)} B, ts={self.timestamp})")


class FrameSink(Protocol):
    """What a source calls (on the event loop)."""

    def on_frame(self, frame: EncodedFrame) -> None:
        """A frame of one publisher's track."""
        ...

    def on_left(self, participant: str) -> None:
        """The room says ``participant`` stopped publishing (sources that know)."""
        ...


class RoomSource(Protocol):
    """A room the recorder joins as a subscriber only."""

    kind: str  # "relay" | "janus" (goes into the manifest)
    address: str

    async def start(self, sink: FrameSink) -> None:
        """Join and subscribe to every publisher; frames go to ``sink``."""
        ...

    def request_keyframe(self, participant: str, kind: str) -> None:
        """Ask ``participant`` for a keyframe (PLI) on its ``kind`` track."""
        ...

    async def wait_closed(self) -> str:
        """Return when the room ended (the reason, e.g. ``"relay closed"``)."""
        ...

    async def close(self) -> None:
        """Leave the room (idempotent)."""
        ...

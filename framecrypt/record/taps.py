"""What the room sources share: aiortc receivers whose frames are tapped before any
decoder (:func:`framecrypt.webrtc._aiortc_internals.install_tap`), keyframe requests
back through those receivers, and the room's end (first reason wins)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from framecrypt.webrtc import _aiortc_internals as _ai

from .source import EncodedFrame, FrameSink


class TappedSource:
    """Base of :class:`~.relay_source.RelaySource` and :class:`~.janus_source.JanusSource`."""

    def __init__(self) -> None:
        self._receivers: dict[tuple[str, str], Any] = {}
        self._taps: dict[str, list[list[bool]]] = {}  # participant -> live flags of its taps
        self._ended = asyncio.Event()
        self._reason = ""

    def _end(self, reason: str) -> None:
        if not self._ended.is_set():
            self._reason = reason
            self._ended.set()

    def _attach(self, receiver: Any, sink: FrameSink, participant: str, kind: str) -> None:
        """Tap ``receiver``: each encoded frame goes to ``sink`` until the room ends."""
        self._receivers[(participant, kind)] = receiver
        live = [True]
        self._taps.setdefault(participant, []).append(live)

        def tap(mime: str, data: bytes, timestamp: int) -> None:
            codec = _ai.MIME_CODECS.get(mime)
            if codec is not None and live[0] and not self._ended.is_set():
                sink.on_frame(EncodedFrame(participant, kind, codec, data, timestamp,
                                           time.monotonic()))

        _ai.install_tap(receiver, tap)

    def _detach(self, participant: str) -> None:
        """Stop every tap of ``participant`` now: frames still on their way from a
        receiver the room has said goodbye to must not reopen the participant's file
        (a publisher that comes back is subscribed again, with new taps)."""
        for live in self._taps.pop(participant, []):
            live[0] = False
        for key in [k for k in self._receivers if k[0] == participant]:
            del self._receivers[key]

    def request_keyframe(self, participant: str, kind: str) -> None:
        receiver = self._receivers.get((participant, kind))
        if receiver is not None and kind == "video":
            _ai.request_keyframe(receiver)

    async def wait_closed(self) -> str:
        await self._ended.wait()
        return self._reason

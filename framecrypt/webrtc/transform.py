"""Sender and receiver transforms: end-to-end encryption of aiortc's encoded frames
through a :class:`framecrypt.Pool`.

A :class:`SenderTransform` seals every whole encoded frame an ``RTCRtpSender`` sends
(VP8, H.264, Opus) with one pool participant's current key, before aiortc packetizes
it; a :class:`ReceiverTransform` opens every frame an ``RTCRtpReceiver`` reassembles
with one pool participant's keys before aiortc decodes it. A frame that does not
authenticate is dropped and aiortc asks the sender for a keyframe (PLI).

The pool owns the send counters, so IVs are deterministic and unique per key
(``ssrc ‖ RTP timestamp ‖ counter``), never random.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from aiortc.mediastreams import MediaStreamTrack
from av.packet import Packet

from framecrypt.errors import FramecryptError
from framecrypt.frame import Frame

from . import _aiortc_internals as _ai

if TYPE_CHECKING:
    from aiortc import RTCRtpReceiver, RTCRtpSender

    from framecrypt.broker.pool import Pool

log = logging.getLogger("framecrypt.webrtc")

CLOCK_RATES = {"vp8": 90000, "h264": 90000, "opus": 48000}


@dataclass
class SenderStats:
    """Counters of one sender transform (no key material)."""

    frames_sealed: int = 0
    keyframes_sealed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    frames_dropped: int = 0
    keyframe_requests: int = 0  # PLI/FIR received from the remote side
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class ReceiverStats:
    """Counters of one receiver transform (no key material)."""

    frames_opened: int = 0
    frames_failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def _count(errors: dict[str, int], reason: str) -> None:
    errors[reason] = errors.get(reason, 0) + 1


def _h264_has_idr(data: bytes) -> bool:
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        if data[i + 3] & 0x1F == 5:
            return True
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


def frame_is_keyframe(codec: str, data: bytes) -> bool:
    """Keyframe flag from the clear part of an encoded (or sealed) frame."""
    if codec == "vp8":
        return _ai.vp8_is_keyframe(data)
    if codec == "h264":
        return _h264_has_idr(data)
    return False


class SenderTransform:
    """Seals what one ``RTCRtpSender`` sends with ``participant``'s key in ``pool``.

    ``timeout`` bounds the wait for the pool per frame (a frame not sealed in time is
    dropped, never sent in clear, and the next frame is forced to be a keyframe).
    ``on_keyframe_request`` is called (on the loop) on every PLI/FIR the sender gets.
    """

    def __init__(self, pool: Pool, participant: str, *, timeout: float = 2.0,
                 on_keyframe_request: Callable[[], None] | None = None) -> None:
        self.pool = pool
        self.participant = participant
        self.timeout = timeout
        self.stats = SenderStats()
        self.codec: str | None = None
        self.ssrc = 0
        self._on_keyframe_request = on_keyframe_request
        self._need_keyframe = False
        self._last_sealed: Packet[Any] | None = None
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"SenderTransform(participant={self.participant!r}, codec={self.codec!r}, "
                f"sealed={self.stats.frames_sealed})")

    def attach(self, sender: RTCRtpSender) -> SenderTransform:
        """Hook ``sender`` (before negotiation completes; call once per sender)."""
        self._loop_thread = threading.get_ident()
        self.ssrc = _ai.sender_ssrc(sender)
        _ai.install_sender(sender, self, self._wrap_track, self._keyframe_requested)
        return self

    # --- the Sealer protocol (called by framecrypt's encoders) -------------------------

    def negotiated(self, codec: str) -> None:
        self.codec = codec

    def take_keyframe_request(self) -> bool:
        with self._lock:
            need, self._need_keyframe = self._need_keyframe, False
        return need

    def take_sealed_packet(self, packet: Packet[Any]) -> bool:
        ok = packet is self._last_sealed
        self._last_sealed = None
        return ok

    def seal(self, data: bytes, codec: str, keyframe: bool, timestamp: int) -> bytes | None:
        """Seal one frame through the pool, blocking this (encoder) thread."""
        if threading.get_ident() == self._loop_thread:
            self._drop("called on the event loop thread")
            return None
        frame = Frame(data, codec, keyframe=keyframe, ssrc=self.ssrc,
                      timestamp=timestamp & 0xFFFFFFFF)
        try:
            fut = self.pool.submit_threadsafe(self.participant, frame)
        except FramecryptError as e:
            self._drop(type(e).__name__)
            return None
        try:
            sealed = fut.result(self.timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self._drop("timeout")
            return None
        except FramecryptError as e:
            self._drop(type(e).__name__)
            return None
        except concurrent.futures.CancelledError:
            self._drop("cancelled")
            return None
        self._sealed(data, sealed, keyframe)
        return sealed

    # --- internals ---------------------------------------------------------------------

    def _sealed(self, data: bytes, sealed: bytes, keyframe: bool) -> None:
        s = self.stats
        s.frames_sealed += 1
        s.keyframes_sealed += keyframe
        s.bytes_in += len(data)
        s.bytes_out += len(sealed)

    def _drop(self, reason: str) -> None:
        self.stats.frames_dropped += 1
        _count(self.stats.errors, reason)
        with self._lock:
            self._need_keyframe = True

    def _keyframe_requested(self) -> None:
        self.stats.keyframe_requests += 1
        if self._on_keyframe_request is not None:
            self._on_keyframe_request()

    def _wrap_track(self, track: MediaStreamTrack) -> MediaStreamTrack:
        if isinstance(track, _SealingTrack):
            return track
        return _SealingTrack(track, self)

    async def seal_packet(self, packet: Packet[Any]) -> Packet[Any]:
        """Seal a pre-encoded ``av.Packet`` (on the loop); the sender's encoder sends
        only packets sealed here."""
        codec = self.codec
        data = bytes(packet)
        if codec is None or not data:
            self._drop("no negotiated codec" if codec is None else "empty packet")
            return packet
        keyframe = bool(packet.is_keyframe) or frame_is_keyframe(codec, data)
        ts = 0
        if packet.pts is not None and packet.time_base is not None:
            ts = int(packet.pts * packet.time_base * CLOCK_RATES[codec])
        frame = Frame(data, codec, keyframe=keyframe, ssrc=self.ssrc, timestamp=ts & 0xFFFFFFFF)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation
            # of aiortc's RTP task when the result arrives at the same time, and then
            # RTCRtpSender.stop() waits forever
            async with asyncio.timeout(self.timeout):
                sealed = await self.pool.encrypt(self.participant, frame)
        except (FramecryptError, TimeoutError) as e:
            self._drop(type(e).__name__)
            return packet  # not registered as sealed: the encoder drops it
        out = Packet(sealed)
        out.pts = packet.pts
        out.time_base = packet.time_base or Fraction(1, CLOCK_RATES[codec])
        self._sealed(data, sealed, keyframe)
        self._last_sealed = out
        return out


class _SealingTrack(MediaStreamTrack):
    """The sender's view of the application's track: pre-encoded packets are sealed
    here (on the loop); decoded frames pass through to framecrypt's encoder."""

    def __init__(self, inner: MediaStreamTrack, transform: SenderTransform) -> None:
        super().__init__()
        self.kind = inner.kind
        self.inner = inner
        self._transform = transform
        _ai.set_track_id(self, _ai.track_id(inner))

    async def recv(self) -> Any:
        data = await self.inner.recv()
        if isinstance(data, Packet):
            return await self._transform.seal_packet(data)
        return data

    def stop(self) -> None:
        super().stop()
        self.inner.stop()


class ReceiverTransform:
    """Opens what one ``RTCRtpReceiver`` receives with ``participant``'s keys in
    ``pool`` (the pool must run on the peer connection's event loop)."""

    def __init__(self, pool: Pool, participant: str,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.pool = pool
        self.participant = participant
        self.stats = ReceiverStats()
        self._receiver: RTCRtpReceiver | None = None
        self._on_failure = on_failure

    def __repr__(self) -> str:
        return (f"ReceiverTransform(participant={self.participant!r}, "
                f"opened={self.stats.frames_opened}, failed={self.stats.frames_failed})")

    def attach(self, receiver: RTCRtpReceiver) -> ReceiverTransform:
        """Hook ``receiver`` before it starts (in ``pc.on("track")`` or before)."""
        pool_loop = getattr(self.pool, "loop", None)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if pool_loop is None or (running is not None and pool_loop is not running):
            raise RuntimeError("start the pool on the peer connection's event loop first")
        _ai.install_receiver(receiver, self)
        self._receiver = receiver
        return self

    def request_keyframe(self) -> None:
        """Ask the remote sender for a keyframe (PLI with the next video packet)."""
        if self._receiver is not None:
            _ai.request_keyframe(self._receiver)

    # --- the Opener protocol (called on the loop by the decoder queue) -----------------

    def open(self, codec: str, data: bytes, done: Callable[[bytes], None],
             failed: Callable[[], None]) -> None:
        stats = self.stats
        stats.bytes_in += len(data)

        def outcome(_index: int, result: bytes | None, err: BaseException | None) -> None:
            if err is None and result is not None:
                stats.frames_opened += 1
                stats.bytes_out += len(result)
                done(result)
            else:
                self._fail(type(err).__name__ if err is not None else "no result", failed)

        # no keyframe hint: the pool reads the frame type from the frame's clear bytes
        # (VP8 P bit, H.26x NAL types, ...), as a browser receiver does
        frame = Frame(data, codec)
        try:
            self.pool.submit(self.participant, frame, outcome, decrypt=True)
        except FramecryptError as e:
            self._fail(type(e).__name__, failed)

    def _fail(self, reason: str, failed: Callable[[], None]) -> None:
        self.stats.frames_failed += 1
        _count(self.stats.errors, reason)
        failed()
        if self._on_failure is not None:
            self._on_failure(reason)

"""Every access to aiortc's (and aioice's) private names, in one module.

aiortc has no encoded-transform API (aiortc#374, aiortc#984), so framecrypt reaches
into it **per instance** (never by patching a module): a sender gets an encoder
subclass that seals the whole encoded frame before aiortc packetizes it; a receiver
gets a decoder queue that opens each reassembled frame before the decoder thread sees
it. Nothing here changes aiortc for peer connections framecrypt was not attached to.

Supported: aiortc 1.16.x (checked at import, :func:`check`). What is used, and why:

- ``RTCRtpSender._RTCRtpSender__encoder``: the encoder slot, filled by
  :func:`install_sender` just before ``send()`` starts the RTP loop (aiortc fills it
  only while it is ``None``); ``Vp8Encoder._packetize`` / ``H264Encoder._packetize`` /
  ``H264Encoder._split_bitstream``: where the whole frame exists before packetization;
  ``OpusEncoder.encode`` / ``pack``: one Opus frame per payload.
- ``RTCRtpSender._RTCRtpSender__started``, ``_ssrc``, ``_send_keyframe`` (PLI/FIR);
  ``send`` / ``replaceTrack`` / ``_send_keyframe`` are wrapped on the instance;
  ``MediaStreamTrack._id`` keeps a wrapper track's id (SDP msid).
- ``RTCRtpReceiver._RTCRtpReceiver__decoder_queue`` / ``__decoder_error`` /
  ``__decoder_thread``: the queue the decoder thread reads ``(codec, JitterFrame)``
  from, and the event that makes aiortc send a PLI on the next packet.
- ``RTCIceGatherer._connection`` and aioice ``Connection`` gathering state: loopback-only
  candidates (aioice never offers 127.0.0.1), per connection.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import aiortc
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamTrack, convert_timebase
from av.frame import Frame as AvFrame
from av.packet import Packet

log = logging.getLogger("framecrypt.webrtc")

SUPPORTED_AIORTC = ((1, 16),)
SUPPORTED_TEXT = "aiortc 1.16.x"

_SENDER_ATTRS = ("_RTCRtpSender__encoder", "_RTCRtpSender__started", "_ssrc")
_RECEIVER_ATTRS = ("_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__decoder_error",
                   "_RTCRtpReceiver__decoder_thread")
_CLASS_ATTRS: tuple[tuple[type, str], ...] = (
    (Vp8Encoder, "_packetize"), (Vp8Encoder, "encode"), (Vp8Encoder, "pack"),
    (H264Encoder, "_packetize"), (H264Encoder, "_split_bitstream"), (H264Encoder, "encode"),
    (H264Encoder, "pack"), (OpusEncoder, "encode"), (OpusEncoder, "pack"),
    (RTCRtpSender, "send"), (RTCRtpSender, "_send_keyframe"), (RTCRtpSender, "replaceTrack"),
    (RTCRtpReceiver, "receive"), (JitterFrame, "__init__"),
)

# codec MIME type (lower case) -> framecrypt codec name
MIME_CODECS = {"video/vp8": "vp8", "video/h264": "h264", "audio/opus": "opus"}


class UnsupportedAiortc(RuntimeError):
    """The installed aiortc lacks what framecrypt's hooks need."""


def aiortc_version() -> tuple[int, ...]:
    parts = []
    for p in str(getattr(aiortc, "__version__", "0")).split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check() -> None:
    """Fail fast (at import of :mod:`framecrypt.webrtc`) on an aiortc we do not know."""
    v = aiortc_version()
    if v[:2] not in SUPPORTED_AIORTC:
        raise UnsupportedAiortc(
            f"framecrypt.webrtc supports {SUPPORTED_TEXT}; aiortc "
            f"{getattr(aiortc, '__version__', '?')} is installed")
    missing = [f"{cls.__name__}.{name}" for cls, name in _CLASS_ATTRS if not hasattr(cls, name)]
    if missing:
        raise UnsupportedAiortc(f"aiortc lacks {', '.join(missing)} (supported: "
                                f"{SUPPORTED_TEXT})")


def _private(obj: object, name: str) -> Any:
    """Read a private attribute (its name is checked by :func:`_require` first)."""
    return getattr(obj, name)


def _require(obj: object, names: Iterable[str]) -> None:
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise UnsupportedAiortc(f"{type(obj).__name__} lacks {', '.join(missing)} "
                                f"(supported: {SUPPORTED_TEXT})")


# --- send side ----------------------------------------------------------------------------


class Sealer(Protocol):
    """What the encoders need from a sender transform."""

    def seal(self, data: bytes, codec: str, keyframe: bool, timestamp: int) -> bytes | None:
        """Seal one whole encoded frame (blocking; never on the event loop thread);
        ``None`` drops the frame."""
        ...

    def take_keyframe_request(self) -> bool:
        """True once after a frame was dropped: the next frame must be a keyframe."""
        ...

    def take_sealed_packet(self, packet: Packet[Any]) -> bool:
        """True if ``packet`` is the one the sender's track just sealed (pack path)."""
        ...

    def negotiated(self, codec: str) -> None:
        """The codec the sender is about to send (framecrypt name)."""
        ...


def vp8_is_keyframe(frame: bytes) -> bool:
    """VP8 frame tag: bit 0 of the first byte is 0 on key frames (RFC 6386 §9.1)."""
    return bool(frame) and not frame[0] & 1


def h264_is_keyframe(nals: Iterable[bytes]) -> bool:
    return any(n and n[0] & 0x1F == 5 for n in nals)


def _frame_timestamp(frame: AvFrame) -> int:
    if frame.pts is None or frame.time_base is None:
        return 0
    return int(convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE))


class _SealingVideo:
    """What both video encoders add to aiortc's: the timestamp of the frame being
    encoded, keyframes on request, and ``pack`` of pre-encoded packets that were sealed
    beforehand (packetized as they are: ``_passthrough``)."""

    _sealer: Sealer
    _ts: int
    _passthrough: bool

    def _init_sealing(self, sealer: Sealer) -> None:
        self._sealer = sealer
        self._ts = 0
        self._passthrough = False

    def encode(self, frame: AvFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        self._ts = _frame_timestamp(frame)
        return super().encode(  # type: ignore[misc, no-any-return]
            frame, self._sealer.take_keyframe_request() or force_keyframe)

    def pack(self, packet: Packet[Any]) -> tuple[list[bytes], int]:
        if not self._sealer.take_sealed_packet(packet):
            return [], 0  # fail closed: an unsealed pre-encoded frame is never sent
        self._passthrough = True
        try:
            return super().pack(packet)  # type: ignore[misc, no-any-return]
        finally:
            self._passthrough = False


class E2EEVp8Encoder(_SealingVideo, Vp8Encoder):
    """aiortc's VP8 encoder, sealing each whole frame before the payload descriptor."""

    def __init__(self, sealer: Sealer) -> None:
        super().__init__()
        self._init_sealing(sealer)

    def _packetize(self, buffer: bytes, picture_id: int) -> list[bytes]:  # type: ignore[override]
        if self._passthrough:
            return Vp8Encoder._packetize(buffer, picture_id)
        if not buffer:
            return []
        sealed = self._sealer.seal(buffer, "vp8", vp8_is_keyframe(buffer), self._ts)
        if sealed is None:
            return []
        return Vp8Encoder._packetize(sealed, picture_id)


class E2EEH264Encoder(_SealingVideo, H264Encoder):
    """aiortc's H.264 encoder: the NAL units of a frame are joined (Annex B), sealed
    (LiveKit: clear up to the first slice, the rest RBSP-escaped so no start code
    appears in it) and split again before FU-A/STAP-A packetization."""

    def __init__(self, sealer: Sealer) -> None:
        super().__init__()
        self._init_sealing(sealer)

    def _packetize(self, packages: Iterable[bytes]) -> list[bytes]:  # type: ignore[override]
        if self._passthrough:
            return H264Encoder._packetize(packages)
        nals = [n for n in packages if n]
        if not nals:
            return []
        annexb = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
        sealed = self._sealer.seal(annexb, "h264", h264_is_keyframe(nals), self._ts)
        if sealed is None:
            return []
        return H264Encoder._packetize(H264Encoder._split_bitstream(sealed))


class E2EEOpusEncoder(OpusEncoder):
    """aiortc's Opus encoder; each Opus packet (one RTP payload) is sealed alone."""

    def __init__(self, sealer: Sealer) -> None:
        super().__init__()
        self._sealer = sealer

    def encode(self, frame: AvFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, ts = super().encode(frame, force_keyframe)
        if not payloads:
            return payloads, ts
        out = []
        for p in payloads:
            sealed = self._sealer.seal(p, "opus", False, int(ts))
            if sealed is not None:
                out.append(sealed)
        return out, ts

    def pack(self, packet: Packet[Any]) -> tuple[list[bytes], int]:
        if not self._sealer.take_sealed_packet(packet):
            return [], 0
        return super().pack(packet)


def make_encoder(mime_type: str, sealer: Sealer) -> Vp8Encoder | H264Encoder | OpusEncoder:
    mime = mime_type.lower()
    if mime == "video/vp8":
        return E2EEVp8Encoder(sealer)
    if mime == "video/h264":
        return E2EEH264Encoder(sealer)
    if mime == "audio/opus":
        return E2EEOpusEncoder(sealer)
    raise UnsupportedAiortc(f"no end-to-end encrypting encoder for {mime_type} "
                            f"(supported: {', '.join(sorted(MIME_CODECS))})")


def sender_ssrc(sender: RTCRtpSender) -> int:
    _require(sender, ("_ssrc",))
    return int(sender._ssrc)


def install_sender(sender: RTCRtpSender, sealer: Sealer,
                   wrap_track: Callable[[MediaStreamTrack], MediaStreamTrack],
                   on_keyframe_request: Callable[[], None]) -> None:
    """Make ``sender`` seal every frame it sends. Per instance:

    - ``send()`` is wrapped so the encoder slot receives framecrypt's encoder for the
      negotiated codec right before the RTP loop starts (an unsupported codec raises:
      nothing is ever sent in clear);
    - the track goes through ``wrap_track`` (pre-encoded ``av.Packet`` sources are
      sealed there, on the loop); ``replaceTrack`` keeps wrapping new tracks;
    - PLI/FIR (``_send_keyframe``) is counted through ``on_keyframe_request``.
    """
    _require(sender, _SENDER_ATTRS)
    if _private(sender, "_RTCRtpSender__started"):
        raise RuntimeError("attach the sender transform before the connection starts sending")
    if getattr(sender, "_framecrypt_sealer", None) is not None:
        raise RuntimeError("this sender already has a framecrypt transform")
    sender._framecrypt_sealer = sealer  # type: ignore[attr-defined]

    orig_send = sender.send
    orig_replace = sender.replaceTrack
    orig_keyframe = sender._send_keyframe

    async def send(parameters: Any) -> None:
        if not _private(sender, "_RTCRtpSender__started"):
            codec = parameters.codecs[0]
            encoder = make_encoder(codec.mimeType, sealer)
            sealer.negotiated(MIME_CODECS[codec.mimeType.lower()])
            sender._RTCRtpSender__encoder = encoder  # type: ignore[attr-defined]
        await orig_send(parameters)

    def replace_track(track: MediaStreamTrack | None) -> None:
        orig_replace(None if track is None else wrap_track(track))

    def send_keyframe() -> None:
        on_keyframe_request()
        orig_keyframe()

    sender.send = send  # type: ignore[method-assign]
    sender.replaceTrack = replace_track  # type: ignore[method-assign]
    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
    if sender.track is not None:
        replace_track(sender.track)


def watch_keyframe_requests(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever ``sender`` receives a PLI/FIR (per instance)."""
    _require(sender, ("_send_keyframe",))
    orig = sender._send_keyframe

    def send_keyframe() -> None:
        callback()
        orig()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


# --- receive side -------------------------------------------------------------------------


class Opener(Protocol):
    """What the decoder queue needs from a receiver transform (called on the loop)."""

    def open(self, codec: str, data: bytes, done: Callable[[bytes], None],
             failed: Callable[[], None]) -> None: ...


class _OpeningQueue(queue.Queue):  # type: ignore[type-arg]
    """The receiver's decoder queue: ``put`` (on the event loop, from
    ``_handle_rtp_packet``) hands the sealed frame to the opener; the opened frame is
    queued for the decoder thread when it comes back (per-stream order is kept by the
    pool). A frame that does not open is dropped and the error event makes aiortc send
    a PLI with the next packet."""

    def __init__(self, opener: Opener, error_event: threading.Event) -> None:
        super().__init__()
        self._opener = opener
        self._error_event = error_event

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        codec, frame = item
        name = MIME_CODECS.get(codec.mimeType.lower())
        if name is None:  # never decode what we cannot open
            self._error_event.set()
            return
        ts = frame.timestamp

        def done(data: bytes) -> None:
            super(_OpeningQueue, self).put((codec, JitterFrame(data=data, timestamp=ts)))

        self._opener.open(name, frame.data, done, self._error_event.set)


class _TapQueue(queue.Queue):  # type: ignore[type-arg]
    """A decoder queue that hands every reassembled frame to ``tap`` and never to the
    decoder (the relay: it forwards frames it cannot read)."""

    def __init__(self, tap: Callable[[str, bytes, int], None]) -> None:
        super().__init__()
        self._tap = tap

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        codec, frame = item
        self._tap(codec.mimeType.lower(), frame.data, frame.timestamp)


def _check_receiver_unstarted(receiver: RTCRtpReceiver) -> None:
    _require(receiver, _RECEIVER_ATTRS)
    if _private(receiver, "_RTCRtpReceiver__decoder_thread") is not None:
        raise RuntimeError("attach the receiver transform before the connection starts "
                           "receiving (in pc.on('track') or before setRemoteDescription "
                           "returns to the loop)")
    if getattr(receiver, "_framecrypt_hooked", False):
        raise RuntimeError("this receiver already has a framecrypt transform")
    receiver._framecrypt_hooked = True  # type: ignore[attr-defined]


def install_receiver(receiver: RTCRtpReceiver, opener: Opener) -> None:
    """Open every reassembled frame before aiortc's decoder thread gets it."""
    _check_receiver_unstarted(receiver)
    event = receiver._RTCRtpReceiver__decoder_error  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__decoder_queue = _OpeningQueue(opener, event)  # type: ignore[attr-defined]


def install_tap(receiver: RTCRtpReceiver, tap: Callable[[str, bytes, int], None]) -> None:
    """Hand every reassembled frame to ``tap(mime_type, data, timestamp)`` instead of
    decoding it (used by the demo's relay)."""
    _check_receiver_unstarted(receiver)
    receiver._RTCRtpReceiver__decoder_queue = _TapQueue(tap)  # type: ignore[attr-defined]


def request_keyframe(receiver: RTCRtpReceiver) -> None:
    """Make aiortc send a PLI with the next packet this (video) receiver gets."""
    _require(receiver, ("_RTCRtpReceiver__decoder_error",))
    receiver._RTCRtpReceiver__decoder_error.set()  # type: ignore[attr-defined]


# --- ICE ----------------------------------------------------------------------------------


def loopback_only(pc: RTCPeerConnection) -> None:
    """Gather only 127.0.0.1 host candidates on every transport of ``pc`` (call after
    the transceivers exist, before ``setLocalDescription``). aioice skips loopback
    addresses; this replaces candidate gathering on these connections only."""
    host_only(pc, ("127.0.0.1",))


def host_only(pc: RTCPeerConnection, addresses: tuple[str, ...]) -> None:
    """Gather host candidates on ``addresses`` only (no STUN/TURN) on every transport
    of ``pc``; see :func:`loopback_only`."""
    transports = set()
    for t in pc.getTransceivers():
        transports.add(t.sender.transport.transport)
        transports.add(t.receiver.transport.transport)
    if pc.sctp is not None:
        transports.add(pc.sctp.transport.transport)
    for ice in transports:
        gatherer = ice.iceGatherer
        _require(gatherer, ("_connection",))
        conn: Any = _private(gatherer, "_connection")
        _require(conn, ("_local_candidates_start", "_local_candidates",
                        "_local_candidates_end", "_components", "get_component_candidates"))
        if getattr(conn, "_framecrypt_loopback", False):
            continue
        conn._framecrypt_loopback = True
        conn.gather_candidates = _host_gather(conn, list(addresses))


def _host_gather(conn: Any, addresses: list[str]) -> Callable[[], Awaitable[None]]:
    async def gather_candidates() -> None:
        if conn._local_candidates_start:
            return
        conn._local_candidates_start = True
        for component in sorted(conn._components):
            conn._local_candidates += await conn.get_component_candidates(
                component=component, addresses=addresses)
        conn._local_candidates_end = True

    return gather_candidates


def track_id(track: MediaStreamTrack) -> str:
    return str(track.id)


def set_track_id(track: MediaStreamTrack, value: str) -> None:
    """Keep a wrapper track's id equal to the wrapped track's (SDP msid)."""
    _require(track, ("_id",))
    track._id = value

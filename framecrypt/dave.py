"""Discord's DAVE frame format (protocol v1.1), byte-compatible with libdave and davey.

Per-call functions over the pure core of :mod:`framecrypt.workers.dave`:

- :func:`base_secret`: a sender's base secret, MLS-Exporter("Discord Secure Frames v0",
  user id, 16) of an epoch's exporter secret (the MLS group gives it; a worker pool takes
  it with :meth:`framecrypt.Pool.set_dave_key`);
- :func:`seal` / :func:`open`: one frame under a sender's base secret (or a
  :class:`KeyRatchet`), the codec's unencrypted ranges (Opus and VP9 whole, VP8 payload
  header, H.264/H.265 NAL-aware, AV1 OBU-aware); :func:`nonce_of` reads the nonce a
  sealed frame used;
- :class:`Sender` and :class:`Receiver` for streams (nonce counter and ratchet moves;
  generations, nonce window, epoch transitions, passthrough, the SFU's Opus silence).

The stateless functions keep no counters and no replay state: never seal two frames
with one ``(base secret, nonce)``. H.264/H.265 frames whose ciphertext would hold a
start code are sealed again with the next nonce (libdave's rule, up to 10 attempts):
continue after :func:`nonce_of` of the result. Derived keys and AES objects are cached
per base secret (:data:`CACHE_SIZE` secrets); nothing here logs or shows a key.

>>> from framecrypt import dave
>>> secret = bytes(range(16))
>>> sealed = dave.seal(b"\\x80" * 40, base_secret=secret, codec="opus", nonce=1)
>>> sealed[-2:] == b"\\xfa\\xfa" and dave.open(sealed, base_secret=secret) == b"\\x80" * 40
True
"""

from __future__ import annotations

from collections import OrderedDict

from framecrypt.errors import (
    DroppedFrame,
    InvalidArgument,
    InvalidKeyMaterial,
    InvalidParameter,
)
from framecrypt.workers.dave import footer as _footer
from framecrypt.workers.dave import frame as _frame
from framecrypt.workers.dave import h26x as _h26x
from framecrypt.workers.dave.footer import Footer, is_dave_frame, parse
from framecrypt.workers.dave.frame import OPUS_SILENCE
from framecrypt.workers.dave.ratchet import (
    BASE_SECRET_BYTES,
    EXPORTER_LABEL,
    KeyRatchet,
    base_secret,
)
from framecrypt.workers.dave.receiver import CRYPTOR_EXPIRY, Receiver
from framecrypt.workers.dave.sender import CODECS, Sender

__all__ = [
    "BASE_SECRET_BYTES",
    "CACHE_SIZE",
    "CODECS",
    "CRYPTOR_EXPIRY",
    "EXPORTER_LABEL",
    "OPUS_SILENCE",
    "Footer",
    "KeyRatchet",
    "Receiver",
    "Sender",
    "as_received",
    "base_secret",
    "is_dave_frame",
    "nonce_of",
    "open",
    "parse",
    "seal",
]

CACHE_SIZE = 64
MAX_NONCE = _footer.MAX_NONCE
BytesLike = bytes | bytearray | memoryview

_ratchets: OrderedDict[bytes, KeyRatchet] = OrderedDict()


def _ratchet(base_secret: BytesLike | None, ratchet: KeyRatchet | None) -> KeyRatchet:
    if (base_secret is None) == (ratchet is None):
        raise InvalidArgument("give exactly one of base_secret and ratchet")
    if ratchet is not None:
        if not isinstance(ratchet, KeyRatchet):
            raise InvalidArgument("ratchet must be a framecrypt.dave.KeyRatchet")
        return ratchet
    if not isinstance(base_secret, bytes | bytearray | memoryview):
        raise InvalidArgument("base_secret must be bytes")
    secret = bytes(base_secret)
    if len(secret) != BASE_SECRET_BYTES:
        raise InvalidKeyMaterial("a DAVE base secret is 16 bytes")
    found = _ratchets.get(secret)
    if found is None:
        found = _ratchets[secret] = KeyRatchet(secret)
        while len(_ratchets) > CACHE_SIZE:
            _ratchets.popitem(last=False)
    else:
        _ratchets.move_to_end(secret)
    return found


def _frame_bytes(frame: object) -> BytesLike:
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise InvalidArgument("frame must be bytes")
    return frame


def seal(frame: BytesLike, *, codec: str, nonce: int, base_secret: BytesLike | None = None,
         ratchet: KeyRatchet | None = None) -> bytes:
    """Seal one frame of ``codec`` (:data:`CODECS`) with the 32-bit truncated ``nonce``
    (its top byte is the key generation) as libdave's encryptor does.

    Raises :class:`~framecrypt.errors.UnsupportedCodec`,
    :class:`~framecrypt.errors.InvalidKeyMaterial`,
    :class:`~framecrypt.errors.InvalidParameter` (nonce out of range),
    :class:`~framecrypt.errors.MalformedFrame` (an H.264 slice header past its NAL unit)
    or :class:`~framecrypt.errors.DroppedFrame` (every H.26x attempt held a start code).
    """
    data = _frame_bytes(frame)
    if type(nonce) is not int or not 0 <= nonce <= MAX_NONCE:
        raise InvalidParameter("a DAVE nonce is a 32-bit number")
    if not isinstance(codec, str):
        raise InvalidArgument("codec must be a str")
    r = _ratchet(base_secret, ratchet)
    if codec in ("h264", "h265"):
        if nonce + _h26x.MAX_ATTEMPTS - 1 > MAX_NONCE:
            raise InvalidParameter("no room for H.26x retries before the nonce wraps")
        rewritten, ranges = _h26x.h26x_frame(codec, data)
        for attempt in range(_h26x.MAX_ATTEMPTS):
            n = nonce + attempt
            sealed = _frame.seal(r.aead(n >> 24), n, rewritten, ranges)
            if not _h26x.has_start_code_leak(sealed, ranges):
                return sealed
        raise DroppedFrame("every H.26x sealing attempt held a start code")
    key = r.aead(nonce >> 24)
    if codec == "av1":
        rewritten_av1, av1_ranges = _frame.av1_frame(data)
        return _frame.seal(key, nonce, rewritten_av1, av1_ranges)
    return _frame.seal(key, nonce, data, _frame.unencrypted_ranges(codec, data))


def open(frame: BytesLike, *, base_secret: BytesLike | None = None,
         ratchet: KeyRatchet | None = None) -> bytes:
    """Open one sealed frame (codec-agnostic: the footer lists the clear ranges).
    No replay window and no generation limits: :class:`Receiver` keeps those.

    Raises :class:`~framecrypt.errors.MalformedFrame` (bad footer: not a DAVE frame),
    :class:`~framecrypt.errors.AuthenticationFailed`,
    :class:`~framecrypt.errors.InvalidKeyMaterial`.
    """
    data = _frame_bytes(frame)
    r = _ratchet(base_secret, ratchet)
    f = _footer.parse(data)
    try:
        key = r.aead(f.generation)
    except InvalidParameter:  # a generation this ratchet erased
        raise DroppedFrame("DAVE frame of an erased generation") from None
    return _frame.open_parsed(key, data, f)


def as_received(frame: BytesLike, codec: str) -> bytes:
    """The frame a receiver opens when a sender seals ``frame``: H.264/H.265 rebuilt
    behind 4-byte start codes (bytes before the first dropped), AV1 without the OBUs the
    packetizer drops and without the last OBU's size field; other codecs unchanged."""
    data = _frame_bytes(frame)
    if codec in ("h264", "h265"):
        return _h26x.h26x_frame(codec, data)[0]
    if codec == "av1":
        return _frame.av1_frame(data)[0]
    return bytes(data)


def nonce_of(sealed: BytesLike) -> int:
    """The truncated nonce a sealed frame used (:class:`MalformedFrame` if none)."""
    return _footer.parse(_frame_bytes(sealed)).nonce



def demo_cases(video: dict[str, list[bytes]], opus: bytes
               ) -> list[tuple[str, str, bytes, int]]:
    """``framecrypt formats``' DAVE rows: (codec, label, frame, clear bytes the sender
    leaves readable) for real encoded frames (``video``: frames per codec)."""
    out = []
    for codec, label, data in (("vp8", "VP8 key frame", video["vp8"][0]),
                               ("vp8", "VP8 delta", video["vp8"][5]),
                               ("vp9", "VP9 delta", video["vp9"][5]),
                               ("h264", "H.264 IDR+SPS/PPS", video["h264"][0]),
                               ("h264", "H.264 non-IDR", video["h264"][5]),
                               ("h265", "H.265 IDR+VPS/SPS/PPS", video["h265"][0]),
                               ("av1", "AV1 delta (OBU headers clear)", video["av1"][5]),
                               ("opus", "Opus 20 ms", opus)):
        sealed = seal(data, base_secret=bytes(16), codec=codec, nonce=1)
        out.append((codec, label, data, sum(n for _, n in parse(sealed).ranges)))
    return out

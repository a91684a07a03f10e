"""How many leading bytes of a frame stay in clear, per codec (LiveKit / Jitsi).

| codec | clear bytes |
| --- | --- |
| opus (any audio) | 1 (the TOC byte) |
| vp8 | 10 on key frames, 3 on delta frames (by frame type, not the bitstream) |
| vp9 | 0 |
| h264 / h265 | offset of the first slice NAL unit + 2, Annex B, with RBSP escaping of
  everything after the header; falls back to the VP8 rule when no slice is found |
| av1 | 0 — **framecrypt's decision**: livekit-client throws on AV1 and native SDKs
  disagree (an OBU wrapper in the newest, 0 in older ones); we encrypt the whole frame,
  which is interoperable only with peers that make the same choice |

Jitsi uses the frame-type rule only (key 10, delta 3, audio 1) for every codec.
"""

from __future__ import annotations

from typing import Final

from framecrypt.errors import UnsupportedCodec

from . import h26x

CODECS: Final = frozenset(("vp8", "vp9", "h264", "h265", "av1", "opus"))
AUDIO_CODECS: Final = frozenset(("opus",))
NALU_CODECS: Final = frozenset(("h264", "h265"))

KEY_BYTES: Final = 10
DELTA_BYTES: Final = 3
AUDIO_BYTES: Final = 1


def check_codec(codec: str) -> str:
    if codec not in CODECS:
        raise UnsupportedCodec(codec)
    return codec


def frame_type_bytes(codec: str, keyframe: bool) -> int:
    """The frame-type rule (VP8 and Jitsi): audio 1, key 10, delta 3."""
    if codec in AUDIO_CODECS:
        return AUDIO_BYTES
    return KEY_BYTES if keyframe else DELTA_BYTES


def clear_prefix(codec: str, keyframe: bool, data: bytes) -> tuple[int, bool]:
    """``(clear byte count, nalu)``; ``nalu`` means start codes are normalised in the
    header and the rest is RBSP-escaped. The count may exceed ``len(data)``; callers
    clamp it as livekit-client does (a view of at most the whole frame)."""
    if codec in AUDIO_CODECS:
        return AUDIO_BYTES, False
    if codec == "vp8":
        return (KEY_BYTES if keyframe else DELTA_BYTES), False
    if codec == "vp9" or codec == "av1":
        return 0, False
    if codec in NALU_CODECS:
        n = h26x.clear_bytes(data, "h264" if codec == "h264" else "h265")
        if n is not None:
            return n, True
        return (KEY_BYTES if keyframe else DELTA_BYTES), False
    raise UnsupportedCodec(codec)

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

**Receivers need no keyframe hint** (:func:`sealed_keyframe`): the sender picks the
rule from its encoder's frame type; the receiver reads it back from the clear bytes of
the sealed frame, as a browser's RTP depacketizer does before livekit-client's
``getUnencryptedBytes`` sees ``frame.type``. Where the clear bytes cannot always tell
(H.26x frames whose count depends on the frame type: Jitsi, or no slice found), the
parse also tries the other rule (:func:`ambiguous`).
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


# what :func:`sealed_keyframe` reads: H.264 IDR (5) and SPS (7); H.265 IRAP (16-21),
# VPS (32) and SPS (33), the NAL types that make libwebrtc's depacketizers call a frame
# a key frame
H264_KEY_NALS: Final = frozenset((5, 7))
H265_KEY_NALS: Final = frozenset((*range(16, 22), 32, 33))
# the inference kind of each codec, as the extension numbers them (fc_lk.h FC_KF_*)
KF_KIND: Final = {"vp8": 1, "vp9": 2, "av1": 3, "h264": 4, "h265": 5}


def sealed_keyframe(codec: str, data: bytes | bytearray | memoryview) -> bool:
    """Whether a frame (sealed or not: only clear bytes are read) is a key frame, from
    its payload, for the frame-type rule (key 10 / delta 3 clear bytes):

    - VP8: the P bit (bit 0 of byte 0, 0 = key frame), clear in both rules;
    - VP9: the uncompressed header's ``frame_type`` (0 = key) in byte 0, not a
      ``show_existing_frame``;
    - AV1: the first OBU after an optional temporal delimiter is a sequence header;
    - H.264 / H.265: a NAL unit of a key type (IDR/SPS; IRAP/VPS/SPS) starts within the
      first 10 bytes (what a key frame keeps clear);
    - audio and unknown codecs: False (their rule does not depend on it).

    Bounded (at most 10 bytes read); any input is fine (never raises).
    """
    size = len(data)
    if not size:
        return False
    b0 = data[0]
    if codec == "vp8":
        return not b0 & 1
    if codec == "vp9":
        if b0 >> 6 != 2:  # frame_marker
            return False
        # profile 3 has a reserved bit before show_existing_frame and frame_type
        return not b0 & (0x06 if b0 & 0x30 == 0x30 else 0x0C)
    if codec == "av1":
        i = 0
        if (b0 >> 3) & 0xF == 2:  # temporal delimiter: header (+ extension), size 0
            if not b0 & 0x02:
                return False
            i = 2 if b0 & 0x04 else 1
            if i >= size or data[i] != 0:
                return False
            i += 1
        return i < size and (data[i] >> 3) & 0xF == 1
    if codec in NALU_CODECS:
        h264 = codec == "h264"
        keys = H264_KEY_NALS if h264 else H265_KEY_NALS
        end = min(size, KEY_BYTES)
        zeros = 0
        for j in range(end - 1):
            b = data[j]
            if b == 0:
                zeros += 1
                continue
            if b == 1 and zeros >= 2:
                t = data[j + 1]
                if (t & 0x1F if h264 else (t >> 1) & 0x3F) in keys:
                    return True
            zeros = 0
    return False


def ambiguous(codec: str, clear: int, nalu: bool) -> bool:
    """Whether a receiver must also try the other frame-type rule: an H.26x frame under
    the frame-type rule (Jitsi, or LiveKit when no slice was found). A delta frame
    keeps 3 bytes clear, so the NAL header :func:`sealed_keyframe` looks for may be
    ciphertext there (and a key frame may start with an access unit delimiter)."""
    return codec in NALU_CODECS and not nalu and clear in (KEY_BYTES, DELTA_BYTES)


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

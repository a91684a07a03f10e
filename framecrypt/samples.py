"""Real encoded frames for demos, benchmarks and tests: a moving test pattern encoded
with PyAV (VP8, VP9, H.264, H.265, AV1) and a tone encoded with Opus.

Deterministic for a given PyAV/FFmpeg build. Nothing here is used on the hot path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

VIDEO_ENCODERS = {
    "vp8": "libvpx",
    "vp9": "libvpx-vp9",
    "h264": "libx264",
    "h265": "libx265",
    "av1": "libsvtav1",
}


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    codec: str
    keyframe: bool
    data: bytes
    pts: int


def _pattern_planes(width: int, height: int, t: int) -> tuple[bytes, bytes, bytes]:
    """A moving diagonal gradient with a bouncing block (Y), slowly shifting chroma."""
    bx = (t * 7) % max(1, width - 32)
    by = (t * 5) % max(1, height - 32)
    rows = []
    for y in range(height):
        base = bytes(((x + y + 3 * t) * 2) & 0xFF for x in range(width))
        if by <= y < by + 32:
            base = base[:bx] + b"\xeb" * 32 + base[bx + 32 :]
        rows.append(base)
    cw, ch = width // 2, height // 2
    u = bytes((128 + int(40 * math.sin((x + t) / 9))) & 0xFF for x in range(cw)) * ch
    v = bytes((128 + int(40 * math.cos((x - t) / 11))) & 0xFF for x in range(cw)) * ch
    return b"".join(rows), u, v


@lru_cache(maxsize=16)
def video(codec: str, count: int = 30, width: int = 320, height: int = 240,
          gop: int = 30, bitrate: int = 600_000) -> tuple[EncodedFrame, ...]:
    """``count`` encoded frames of the test pattern (first one a keyframe)."""
    import os

    import av  # local import: pulling in FFmpeg is slow and not needed by the core

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
    ctx: Any = av.CodecContext.create(VIDEO_ENCODERS[codec], "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.framerate = Fraction(30, 1)
    ctx.bit_rate = bitrate
    ctx.gop_size = gop
    opts = {"h264": {"tune": "zerolatency", "preset": "veryfast", "bf": "0"},
            "h265": {"preset": "ultrafast", "x265-params": "log-level=none:bframes=0"},
            "vp8": {"deadline": "realtime", "cpu-used": "8"},
            "vp9": {"deadline": "realtime", "cpu-used": "8"},
            "av1": {"preset": "10", "svtav1-params": "pred-struct=1:rc=2"}}
    ctx.options = opts.get(codec, {})
    out: list[EncodedFrame] = []

    def drain(packets: list[Any]) -> None:
        for p in packets:
            out.append(EncodedFrame(codec, bool(p.is_keyframe), bytes(p), int(p.pts or 0)))

    for t in range(count):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, data in zip(frame.planes, _pattern_planes(width, height, t), strict=True):
            stride, w = plane.line_size, plane.width
            if stride == w:
                plane.update(data)
            else:
                rows = [data[r * w : (r + 1) * w] + bytes(stride - w) for r in range(plane.height)]
                plane.update(b"".join(rows))
        frame.pts = t
        drain(list(ctx.encode(frame)))
    drain(list(ctx.encode(None)))
    return tuple(out[:count])


@lru_cache(maxsize=4)
def audio(count: int = 50, hz: float = 440.0) -> tuple[EncodedFrame, ...]:
    """``count`` 20 ms Opus frames of a sine tone (48 kHz mono)."""
    import struct

    import av

    ctx: Any = av.CodecContext.create("libopus", "w")
    ctx.sample_rate = 48000
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = 32000
    out: list[EncodedFrame] = []
    n = 960
    for i in range(count):
        samples = [int(12000 * math.sin(2 * math.pi * hz * (i * n + k) / 48000)) for k in range(n)]
        frame = av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(struct.pack(f"<{n}h", *samples))
        frame.sample_rate = 48000
        frame.pts = i * n
        for p in ctx.encode(frame):
            out.append(EncodedFrame("opus", False, bytes(p), int(p.pts or 0)))
    for p in ctx.encode(None):
        out.append(EncodedFrame("opus", False, bytes(p), int(p.pts or 0)))
    return tuple(out[:count])

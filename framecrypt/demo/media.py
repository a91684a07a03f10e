"""Known media for the demo and the WebRTC tests: a moving test pattern whose frames
carry their own index (a 16-bit barcode), a sine tone, and the measurements on what
comes out of a decoder (PSNR of the luma plane, barcode, tone frequency).

Everything is deterministic: frame ``t`` of the pattern can be rebuilt from ``t``, so
a receiver reads the barcode of a decoded picture and compares it with the frame
that was sent, whatever was lost or reordered on the way.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamTrack

WIDTH, HEIGHT, FPS = 320, 240, 30
BARCODE_BITS = 16
BLOCK = 16  # barcode block size (px)
BLACK, WHITE = 16, 235
SAMPLE_RATE = 48000
AUDIO_PTIME = 0.02


@lru_cache(maxsize=4)
def _ramp(width: int, height: int) -> bytes:
    n = width + height + 3 * 1024 + 8
    return bytes((2 * i) & 0xFF for i in range(n))


def pattern_planes(t: int, width: int = WIDTH, height: int = HEIGHT) -> tuple[bytes, bytes, bytes]:
    """Frame ``t``: a diagonal gradient moving left, a bouncing white square, the
    16-bit index ``t`` as a row of black/white blocks on top, slowly moving chroma."""
    ramp = _ramp(width, height)
    shift = (3 * t) % 1024
    bx = (t * 7) % max(1, width - 32)
    by = BLOCK + (t * 5) % max(1, height - 32 - BLOCK)
    code = t & ((1 << BARCODE_BITS) - 1)
    bar = b"".join(bytes((WHITE if code >> (BARCODE_BITS - 1 - i) & 1 else BLACK,)) * BLOCK
                   for i in range(BARCODE_BITS))
    bar_row = (bar + b"\x80" * width)[:width]
    rows = [bar_row] * BLOCK
    square = b"\xeb" * 32
    for y in range(BLOCK, height):
        row = ramp[y + shift : y + shift + width]
        if by <= y < by + 32:
            row = row[:bx] + square + row[bx + 32 :]
        rows.append(row)
    cw, ch = width // 2, height // 2
    u = bytes((128 + int(40 * math.sin((x + t) / 9))) & 0xFF for x in range(cw)) * ch
    v = bytes((128 + int(40 * math.cos((x - t) / 11))) & 0xFF for x in range(cw)) * ch
    return b"".join(rows), u, v


def yuv_frame(planes: Sequence[bytes], width: int, height: int) -> av.VideoFrame:
    """A yuv420p frame from tightly packed planes."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, data in zip(frame.planes, planes, strict=True):
        stride, w = plane.line_size, plane.width
        if stride != w:
            data = b"".join(data[r * w : (r + 1) * w] + bytes(stride - w)
                            for r in range(plane.height))
        plane.update(data)
    return frame


def pattern_frame(t: int, width: int = WIDTH, height: int = HEIGHT) -> av.VideoFrame:
    return yuv_frame(pattern_planes(t, width, height), width, height)


def luma(frame: av.VideoFrame, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """The Y plane of ``frame`` at ``width``×``height``, without row padding."""
    if frame.width != width or frame.height != height or frame.format.name != "yuv420p":
        frame = frame.reformat(width=width, height=height, format="yuv420p")
    plane = frame.planes[0]
    data = bytes(plane)
    stride = plane.line_size
    if stride == width:
        return data[: width * height]
    return b"".join(data[r * stride : r * stride + width] for r in range(height))


def read_barcode(y_plane: bytes, width: int = WIDTH) -> int:
    """The frame index drawn by :func:`pattern_planes` (mean of each block's centre)."""
    code = 0
    for i in range(BARCODE_BITS):
        x0, y0 = i * BLOCK + BLOCK // 4, BLOCK // 4
        total = 0
        for y in range(y0, y0 + BLOCK // 2):
            total += sum(y_plane[y * width + x0 : y * width + x0 + BLOCK // 2])
        code = (code << 1) | (total > 128 * (BLOCK // 2) ** 2)
    return code


_SQUARES = [0] * 511
for _d in range(-255, 256):
    _SQUARES[_d] = _d * _d


def psnr(a: bytes, b: bytes) -> float:
    """PSNR in dB of two 8-bit planes of equal size (99.0 when identical)."""
    if len(a) != len(b) or not a:
        raise ValueError("planes differ in size")
    sq = _SQUARES
    sse = sum(map(sq.__getitem__, map(int.__sub__, a, b)))
    if sse == 0:
        return 99.0
    return 10 * math.log10(255 * 255 * len(a) / sse)


def reference_luma(t: int, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    return pattern_planes(t, width, height)[0]


def score(frame: av.VideoFrame, width: int = WIDTH, height: int = HEIGHT
          ) -> tuple[int, float]:
    """``(index, PSNR dB)`` of a decoded pattern frame against the frame sent."""
    y = luma(frame, width, height)
    t = read_barcode(y, width)
    return t, psnr(y, reference_luma(t, width, height))


def tone_samples(start: int, count: int, hz: float, amplitude: int = 12000) -> bytes:
    w = 2 * math.pi * hz / SAMPLE_RATE
    return struct.pack(f"<{count}h", *(int(amplitude * math.sin(w * (start + k)))
                                        for k in range(count)))


def dominant_hz(samples: Sequence[int], rate: int = SAMPLE_RATE,
                candidates: Sequence[float] = tuple(range(100, 4001, 10))) -> float:
    """The candidate frequency with the most energy (Goertzel)."""
    best, best_p = 0.0, -1.0
    n = len(samples)
    for hz in candidates:
        coeff = 2 * math.cos(2 * math.pi * hz / rate)
        s1 = s2 = 0.0
        for x in samples:
            s1, s2 = x + coeff * s1 - s2, s1
        p = s1 * s1 + s2 * s2 - coeff * s1 * s2
        if p > best_p and n:
            best, best_p = hz, p
    return best


def audio_mono(frame: av.AudioFrame) -> list[int]:
    """Samples of the first channel of a decoded s16 (packed) frame."""
    data = bytes(frame.planes[0])
    channels = len(frame.layout.channels)
    vals = struct.unpack(f"<{len(data) // 2}h", data[: len(data) // 2 * 2])
    return list(vals[::channels]) if frame.format.name == "s16" else list(vals)


class PatternTrack(MediaStreamTrack):
    """The test pattern, paced in real time at ``fps``."""

    kind = "video"

    def __init__(self, fps: int = FPS, width: int = WIDTH, height: int = HEIGHT,
                 start: int = 0) -> None:
        super().__init__()
        self.fps, self.width, self.height = fps, width, height
        self.frames_sent = 0
        self._t = start
        self._start: float | None = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self.frames_sent / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = pattern_frame(self._t, self.width, self.height)
        frame.pts = self.frames_sent * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._t += 1
        self.frames_sent += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """A sine tone, 20 ms s16 mono frames, paced in real time."""

    kind = "audio"

    def __init__(self, hz: float = 440.0) -> None:
        super().__init__()
        self.hz = hz
        self.frames_sent = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        n = int(SAMPLE_RATE * AUDIO_PTIME)
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self.frames_sent * AUDIO_PTIME - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(tone_samples(self.frames_sent * n, n, self.hz))
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.frames_sent * n
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.frames_sent += 1
        return frame


def write_y4m(path: Path, frames: int, fps: int = FPS, width: int = WIDTH,
              height: int = HEIGHT) -> None:
    """The pattern as a y4m file (Chromium's fake camera loops it)."""
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for t in range(frames):
            f.write(b"FRAME\n")
            for plane in pattern_planes(t, width, height):
                f.write(plane)


def write_wav(path: Path, seconds: float, hz: float) -> None:
    """A mono 16-bit tone (Chromium's fake microphone plays it)."""
    n = int(SAMPLE_RATE * seconds)
    data = tone_samples(0, n, hz)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16))
        f.write(b"data" + struct.pack("<I", len(data)) + data)


def png_bytes(frame: av.VideoFrame) -> bytes:
    """``frame`` encoded as PNG (with FFmpeg's encoder: no imaging dependency)."""
    rgb = frame.reformat(format="rgb24")
    ctx: Any = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = rgb.width, rgb.height, "rgb24"
    ctx.time_base = fractions.Fraction(1, 1)
    rgb.pts = 0
    out = b"".join(bytes(p) for p in ctx.encode(rgb))
    out += b"".join(bytes(p) for p in ctx.encode(None))
    return out


def side_by_side(frames: Sequence[av.VideoFrame | None], width: int = WIDTH,
                 height: int = HEIGHT, gap: int = 8) -> av.VideoFrame:
    """Frames next to each other on a grey background (``None`` = a grey panel)."""
    n = len(frames)
    total_w = n * width + (n - 1) * gap
    total_w += total_w % 2
    ys = [bytearray(b"\x80" * total_w) for _ in range(height)]
    us = [bytearray(b"\x80" * (total_w // 2)) for _ in range(height // 2)]
    vs = [bytearray(b"\x80" * (total_w // 2)) for _ in range(height // 2)]
    for i, fr in enumerate(frames):
        if fr is None:
            continue
        x0 = i * (width + gap)
        f = fr.reformat(width=width, height=height, format="yuv420p")
        for plane, rows, w, h, x in ((0, ys, width, height, x0),
                                     (1, us, width // 2, height // 2, x0 // 2),
                                     (2, vs, width // 2, height // 2, x0 // 2)):
            p = f.planes[plane]
            data = bytes(p)
            for r in range(h):
                rows[r][x : x + w] = data[r * p.line_size : r * p.line_size + w]
    return yuv_frame([b"".join(bytes(r) for r in rows) for rows in (ys, us, vs)], total_w,
                     height)

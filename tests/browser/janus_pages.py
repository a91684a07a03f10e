"""Headless Chromium members of a Janus VideoRoom, for tests/test_janus_browser.py.

A :class:`BrowserMember` is one Chromium process (its own profile folder, its own
session) that opens ``janus_page.html`` from a small HTTP server on 127.0.0.1 that
belongs to that member. The page (``janus_page.js``) talks to Janus itself and runs
the published livekit-client E2EE worker on its senders and receivers; this module
serves it:

- ``/config``: its part (name, key, Janus URL, room, publish / simulcast, whom to
  subscribe to); the key is random per test and never logged;
- ``/pattern``: the framecrypt test pattern as raw I420 frames (the page writes them
  into a ``MediaStreamTrackGenerator``: the exact pixels Python members send);
- ``/lk/*``: livekit-client's ``dist/`` (tests/interop/node_modules, pinned);
- ``/frame``: a Y plane the page decoded, scored here (barcode -> the frame sent,
  luma PSNR against it);
- ``/stats``: per-source stats and tone, the outbound layers, the worker's errors;
  answered with ``{"done": true}`` once :meth:`BrowserMember.finish` was called;
- ``/log``: page errors (a test fails when there are any).

:meth:`BrowserMember.stop` kills the Chromium process group it started (SIGTERM, then
SIGKILL) and removes the profile folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from browser.harness import CHROMIUM_FLAGS, CONTENT_TYPES, LK_DIST, stop_group

from framecrypt.demo import media

HERE = Path(__file__).resolve().parent
PAGE_FILES = {"/": "janus_page.html", "/janus_page.html": "janus_page.html",
              "/janus_page.js": "janus_page.js"}
MAX_BODY = 4 << 20


@dataclass(frozen=True)
class PageConfig:
    """What one Chromium member does (sent to the page as /config, key in hex)."""

    name: str
    key: bytes = field(repr=False)
    janus: str  # ws://127.0.0.1:PORT
    room: int
    publish: bool = True
    simulcast: bool = False
    tone_hz: float = 440.0
    start: int = 0  # first pattern frame index
    width: int = media.WIDTH
    height: int = media.HEIGHT
    fps: int = media.FPS
    pattern_frames: int = 90  # the page loops over these
    subscribe: tuple[str, ...] = ()
    frames_to_post: int = 20  # decoded frames scored per source
    skip_frames: int = 20  # first decoded frames per source not scored (ramp-up)
    start_kbps: int = 1000  # VP8 start bitrate asked of Chromium (0: its default)

    def page_json(self) -> dict[str, Any]:
        return {"name": self.name, "key_hex": self.key.hex(), "janus": self.janus,
                "room": self.room, "publish": self.publish, "simulcast": self.simulcast,
                "tone_hz": self.tone_hz, "start": self.start, "width": self.width,
                "height": self.height, "fps": self.fps,
                "pattern_frames": self.pattern_frames, "subscribe": list(self.subscribe),
                "frames_to_post": self.frames_to_post, "skip_frames": self.skip_frames,
                "start_kbps": self.start_kbps}


def pattern_i420(start: int, count: int, width: int, height: int) -> bytes:
    return b"".join(b"".join(media.pattern_planes(t, width, height))
                    for t in range(start, start + count))


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies waiting for their new
    parent to reap them do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


class BrowserMember:
    """One Chromium member (see the module docstring)."""

    def __init__(self, cfg: PageConfig, chromium: str, extra_flags: tuple[str, ...] = ()
                 ) -> None:
        self.cfg = cfg
        self.chromium = chromium
        self.extra_flags = extra_flags
        self.frames: dict[str, list[dict[str, Any]]] = {}  # source -> scored frames
        self.stats: dict[str, Any] = {}
        self.logs: list[str] = []
        self.stats_posts = 0
        self._done = False
        self._tmp: Path | None = None
        self._server: asyncio.Server | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"BrowserMember({self.cfg.name!r}, frames={self.frames_scored()})"

    # --- what the page saw ------------------------------------------------------------------

    def source(self, name: str) -> dict[str, Any]:
        sources: dict[str, Any] = self.stats.get("sources", {})
        return dict(sources.get(name, {}))

    def frames_scored(self, name: str | None = None) -> int:
        if name is not None:
            return len(self.frames.get(name, []))
        return sum(len(v) for v in self.frames.values())

    def psnr(self, name: str) -> tuple[float, float] | None:
        """(median, min) luma PSNR of the frames scored from ``name``."""
        ps = [f["psnr_db"] for f in self.frames.get(name, []) if f["psnr_db"] is not None]
        return (statistics.median(ps), min(ps)) if ps else None

    def indices(self, name: str) -> list[int]:
        return [f["index"] for f in self.frames.get(name, [])]

    def finish(self) -> None:
        """Answer the page's next /stats with done (it then hangs up)."""
        self._done = True

    async def wait_stats(self, timeout: float = 5.0) -> None:
        """Until the page posts stats once more (fresh numbers)."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> BrowserMember:
        self._tmp = Path(tempfile.mkdtemp(prefix=f"fc-janus-{self.cfg.name}-"))
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/janus_page.html"
        with open(self._tmp / "chromium.log", "wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                self.chromium, *CHROMIUM_FLAGS, *self.extra_flags,
                f"--user-data-dir={self._tmp / 'profile'}", url,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        return self

    def chromium_log(self, nbytes: int = 3000) -> str:
        if self._tmp is None:
            return ""
        try:
            return (self._tmp / "chromium.log").read_bytes()[-nbytes:].decode(errors="replace")
        except OSError:
            return ""

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await stop_group(proc)
        if proc is not None:  # the group's other processes (renderers, GPU, utility)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            # until the group is gone (bounded), so none writes into the profile after
            # it is removed
            deadline = asyncio.get_running_loop().time() + 5
            while group_alive(proc.pid) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # --- HTTP -------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in
                       (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            length = int(headers.get("content-length", "0"))
            if length > MAX_BODY:
                raise ValueError("body too large")
            body = await reader.readexactly(length)
            status, ctype, payload = self._route(method, target, headers, body)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ValueError):
            writer.close()
            return
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(payload)}\r\nCache-Control: no-store\r\n"
                     "Connection: close\r\n\r\n".encode() + payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _route(self, method: str, target: str, headers: dict[str, str],
               body: bytes) -> tuple[str, str, bytes]:
        path, _, query = target.partition("?")
        ok_json = ("200 OK", "application/json")
        if method == "GET":
            if path == "/config":
                return *ok_json, json.dumps(self.cfg.page_json()).encode()
            if path == "/pattern":
                q = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                start, count = int(q.get("start", 0)), min(int(q.get("count", 1)), 300)
                w, h = int(q.get("w", media.WIDTH)), int(q.get("h", media.HEIGHT))
                return "200 OK", "application/octet-stream", pattern_i420(start, count, w, h)
            f: Path | None = None
            if path in PAGE_FILES:
                f = HERE / PAGE_FILES[path]
            elif path.startswith("/lk/") and "/" not in path[4:] and ".." not in path:
                f = LK_DIST / path[4:]
            if f is None or not f.is_file():
                return "404 Not Found", "text/plain", b"not found"
            return "200 OK", CONTENT_TYPES.get(f.suffix, "application/octet-stream"), \
                f.read_bytes()
        if path == "/frame":
            self._score(headers, body)
            return *ok_json, b"{}"
        if path == "/stats":
            self.stats = json.loads(body)
            self.stats_posts += 1
            self._changed.set()
            return *ok_json, json.dumps({"done": self._done}).encode()
        if path == "/log":
            self.logs.append(body.decode(errors="replace")[:500])
            return *ok_json, b"{}"
        return "404 Not Found", "text/plain", b"not found"

    def _score(self, headers: dict[str, str], y: bytes) -> None:
        source = headers.get("x-from", "?")
        w, h = int(headers.get("x-width", "0")), int(headers.get("x-height", "0"))
        entry: dict[str, Any] = {"width": w, "how": headers.get("x-how", "?"),
                                 "index": None, "psnr_db": None}
        if w * h == len(y) and w >= media.BLOCK * media.BARCODE_BITS:
            t = media.read_barcode(y, w)
            entry["index"] = t
            entry["psnr_db"] = round(media.psnr(y, media.reference_luma(t, w, h)), 2)
        self.frames.setdefault(source, []).append(entry)

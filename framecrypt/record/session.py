"""The recorder: a trusted room member that only subscribes. Every publisher's sealed
frames come from a :class:`~framecrypt.record.source.RoomSource`, are opened in a
:class:`framecrypt.Pool` (the participant's key context, ``key_name(participant)``)
and the opened *encoded* frames are muxed into one file per participant, without
decoding (:mod:`framecrypt.record.muxer`). A frame that does not open is counted by
reason and never written; on video the recorder then skips to the next keyframe and
asks the publisher for one. A participant silent for ``idle_timeout_s`` (or that the
room says left) has its file finished; if it comes back, a new part starts.

``await Recorder(pool, source, "out").run()`` returns when ``duration`` passed, the
``stop`` event is set (Ctrl-C in the CLI) or the room ended; files are finished and
the manifest written (``manifest.json``) on every one of these paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framecrypt.errors import FramecryptError
from framecrypt.frame import Frame
from framecrypt.webrtc import frame_is_keyframe

from . import manifest as mf
from .muxer import Packet, ParticipantFile
from .source import KINDS, EncodedFrame, RoomSource
from .tracks import GAP_S, FileInfo, Gap, KeyChange, ParticipantState, TrackState

if TYPE_CHECKING:
    from framecrypt.broker.events import PoolEvent
    from framecrypt.broker.pool import Pool

PLI_INTERVAL_S = 0.3
TICK_S = 0.25
DRAIN_TIMEOUT_S = 3.0
TRAILER_KEY_INDEX = ("livekit", "jitsi")  # formats whose last byte is the key index


class Recorder:
    """Record every publisher of ``source`` into ``out_dir`` (see the module doc)."""

    def __init__(self, pool: Pool, source: RoomSource, out_dir: str | Path, *,
                 key_name: Callable[[str], str] | None = None,
                 idle_timeout_s: float = 3.0, manifest_path: str | Path | None = None,
                 checkpoint_s: float = 2.0) -> None:
        self.pool = pool
        self.source = source
        self.out_dir = Path(out_dir)
        self.manifest_path = Path(manifest_path) if manifest_path else (
            self.out_dir / "manifest.json")
        self.key_name = key_name or (lambda participant: participant)
        self.idle_timeout_s = idle_timeout_s
        self.checkpoint_s = checkpoint_s
        self.participants: dict[str, ParticipantState] = {}
        self.stopped = "running"
        self._files: dict[str, ParticipantFile] = {}  # the open part per participant
        self._done_files: dict[str, list[ParticipantFile]] = {}
        self._keys: dict[str, str] = {}  # pool participant -> room participant
        self._last_pli: dict[str, float] = {}
        self._inflight = 0
        self._accepting = False
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        self._ended_wall: float | None = None
        self.errors: list[str] = []

    def __repr__(self) -> str:
        return (f"Recorder({self.source!r}, out_dir={str(self.out_dir)!r}, "
                f"participants={sorted(self.participants)})")

    # --- running ---------------------------------------------------------------------

    async def run(self, duration: float | None = None,
                  stop: asyncio.Event | None = None) -> dict[str, Any]:
        """Record until ``duration`` s passed, ``stop`` is set or the room ended;
        return the manifest (also written to :attr:`manifest_path`)."""
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        self.pool.on_event(self._on_pool_event)
        self._accepting = True
        ended: asyncio.Task[str] | None = None
        waiter: asyncio.Task[bool] | None = None
        try:
            await self.source.start(self)
            ended = asyncio.create_task(self.source.wait_closed())
            waiter = asyncio.create_task(stop.wait()) if stop is not None else None
            deadline = None if duration is None else self._t0 + duration
            checkpoint = time.monotonic()
            while True:
                now = time.monotonic()
                if ended.done():
                    self.stopped = f"room ended: {ended.result()}"
                    break
                if stop is not None and stop.is_set():
                    self.stopped = "interrupted"
                    break
                if deadline is not None and now >= deadline:
                    self.stopped = "duration"
                    break
                self._tick(now)
                if now - checkpoint >= self.checkpoint_s:
                    checkpoint = now
                    mf.write(self.manifest_path, self.manifest())
                timeout = TICK_S if deadline is None else max(0.0, min(TICK_S, deadline - now))
                await asyncio.wait([t for t in (ended, waiter) if t is not None],
                                   timeout=timeout)
        except asyncio.CancelledError:
            self.stopped = "interrupted"
            self._finish()
            raise
        except BaseException:
            self.stopped = "error"
            raise
        finally:
            self._accepting = False
            for t in (ended, waiter):
                if t is not None and not t.done():
                    t.cancel()
            if self.stopped != "interrupted" or self._inflight:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await self._drain()
            with contextlib.suppress(Exception):
                await self.source.close()
            self._finish()
        return self.manifest()

    async def _drain(self) -> None:
        """Wait (bounded) for the frames still being opened in the pool."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _finish(self) -> None:
        """Finish every file and write the manifest (synchronous: safe on every path)."""
        if self._ended_wall is not None:
            return
        for name in list(self._files):
            self._close_file(name, time.monotonic())
        self._ended_wall = time.time()
        mf.write(self.manifest_path, self.manifest())

    def manifest(self) -> dict[str, Any]:
        end = self._ended_wall
        duration = (end if end is not None else time.time()) - self._wall0
        return mf.build(started_wall=self._wall0, ended_wall=end, duration_s=duration,
                        stopped=self.stopped, source=self.source.kind,
                        address=self.source.address, fmt=self.pool.format,
                        participants=self.participants)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Live counters per participant (for progress displays)."""
        out: dict[str, dict[str, Any]] = {}
        for name, p in sorted(self.participants.items()):
            f = self._files.get(name)
            out[name] = {
                "frames_written": p.frames_written, "rejected": sum(p.rejected().values()),
                "video": p.tracks["video"].frames_written if "video" in p.tracks else 0,
                "audio": p.tracks["audio"].frames_written if "audio" in p.tracks else 0,
                "key_index": next((t.key_index for t in p.tracks.values()
                                   if t.key_index is not None), None),
                "state": "left" if p.left_at_s is not None else (
                    "recording" if f is not None else "waiting"),
                "file": f.path.name if f is not None and f.path is not None else None,
            }
        return out

    # --- the FrameSink protocol --------------------------------------------------------

    def on_frame(self, frame: EncodedFrame) -> None:
        if not self._accepting:
            return
        now = time.monotonic()
        rel = now - self._t0
        p = self.participants.get(frame.participant)
        if p is None:
            p = self.participants[frame.participant] = ParticipantState(frame.participant, rel)
            self._keys[self.key_name(frame.participant)] = frame.participant
        if p.left_at_s is not None:  # back after leaving: a new part
            p.left_at_s = None
        t = p.track(frame.kind, frame.codec)
        t.frames_received += 1
        p.last_frame_at_s = rel
        data = frame.data
        index = data[-1] if data and self.pool.format in TRAILER_KEY_INDEX else None
        sealed = Frame(data, frame.codec, keyframe=frame_is_keyframe(frame.codec, data))

        def outcome(_i: int, result: bytes | None, err: BaseException | None) -> None:
            self._inflight -= 1
            if err is None and result is not None:
                self._opened(p, t, frame, index, result)
            else:
                self._rejected(p, t, type(err).__name__ if err else "no result")

        self._inflight += 1
        try:
            self.pool.submit(self.key_name(frame.participant), sealed, outcome, decrypt=True)
        except FramecryptError as e:
            self._inflight -= 1
            self._rejected(p, t, type(e).__name__)

    def on_left(self, participant: str) -> None:
        p = self.participants.get(participant)
        if p is not None and p.left_at_s is None:
            self._close_file(participant, time.monotonic())
            p.left_at_s = p.last_frame_at_s

    # --- frames ----------------------------------------------------------------------

    def _opened(self, p: ParticipantState, t: TrackState, frame: EncodedFrame,
                index: int | None, data: bytes) -> None:
        now = time.monotonic()
        rel = now - self._t0
        t.frames_opened += 1
        if index is not None:
            if t.key_index is not None and index != t.key_index:
                p.key_changes.append(KeyChange(rel, "key index", index, t.key_index, t.kind))
            t.key_index = index
        if not self._accepting and self._ended_wall is not None:
            return  # files already finished
        keyframe = frame_is_keyframe(frame.codec, data)
        if (t.kind == "video" and not keyframe and not t.waiting_keyframe
                and t.step_s(frame.timestamp) > GAP_S["video"]):
            # frames went missing (lost in transit, or dropped while this process
            # stalled): a delta frame after the jump refers to pictures the file does not
            # have and would not decode, so the track waits for a keyframe, as after a
            # rejected frame
            t.waiting_keyframe = True
        if t.waiting_keyframe and not keyframe:
            t.frames_skipped += 1
            t.open_gap(rel, "waiting for keyframe").frames += 1
            self._request_keyframe(p, t, now)
            return
        if t.waiting_keyframe:
            t.waiting_keyframe = False
        t.close_gap(rel)
        f = self._file_for(p, now)
        if f.is_open and t.kind not in f.codecs:
            # a track that starts after the header: this part ends, the next has both
            self._close_file(p.name, now)
            f = self._file_for(p, now)
            t.waiting_keyframe = False  # this frame starts the track (a keyframe on video)
        step = t.step_s(frame.timestamp)
        if step > GAP_S[t.kind]:
            t.gaps.append(Gap(rel - step, rel, "timestamp jump"))
        pts = t.place(frame.timestamp, frame.arrival - f.first_at)
        before = f.frames.get(t.kind, 0)
        if not f.add(Packet(t.kind, frame.codec, data, pts, keyframe), now):
            t.frames_not_muxed += 1
        self._sync(p)
        if f.frames.get(t.kind, 0) > before and keyframe:
            t.keyframes_written += 1

    def _rejected(self, p: ParticipantState, t: TrackState, reason: str) -> None:
        now = time.monotonic()
        t.frames_rejected[reason] = t.frames_rejected.get(reason, 0) + 1
        t.open_gap(now - self._t0, "frames rejected").frames += 1
        if t.kind == "video":
            t.waiting_keyframe = True  # what follows a lost frame does not decode
            self._request_keyframe(p, t, now)

    def _request_keyframe(self, p: ParticipantState, t: TrackState, now: float) -> None:
        if t.kind != "video" or now - self._last_pli.get(p.name, 0.0) < PLI_INTERVAL_S:
            return
        self._last_pli[p.name] = now
        t.keyframe_requests += 1
        self.source.request_keyframe(p.name, t.kind)

    # --- files -----------------------------------------------------------------------

    def _file_for(self, p: ParticipantState, now: float) -> ParticipantFile:
        f = self._files.get(p.name)
        if f is None:
            p.part += 1
            f = self._files[p.name] = ParticipantFile(self.out_dir, p.name, p.part, KINDS,
                                                      now)
            for t in p.tracks.values():
                if t.first_ts is not None:
                    t.restart()
        return f

    def _sync(self, p: ParticipantState) -> None:
        """Per-track written counts from the participant's files."""
        files = self._done_files.get(p.name, []) + (
            [self._files[p.name]] if p.name in self._files else [])
        for kind, t in p.tracks.items():
            t.frames_written = sum(f.frames.get(kind, 0) for f in files)
        p.files = [self._info(f) for f in files if f.path is not None]

    def _info(self, f: ParticipantFile) -> FileInfo:
        assert f.path is not None
        started = f.first_at - self._t0
        ended = f.ended_at
        return FileInfo(str(f.path.relative_to(self.out_dir)), f.container_format, started,
                        None if ended is None else ended - self._t0, dict(f.frames),
                        dict(f.codecs))

    def _close_file(self, name: str, now: float) -> None:
        f = self._files.pop(name, None)
        if f is None:
            return
        try:
            f.close()
        except FramecryptError as e:
            self.errors.append(f"{name}: {e}")
        f.ended_at = now
        self._done_files.setdefault(name, []).append(f)
        p = self.participants[name]
        self._sync(p)
        for t in p.tracks.values():
            t.restart()

    def _tick(self, now: float) -> None:
        for name, f in list(self._files.items()):
            f.maybe_open(now)
            p = self.participants[name]
            if now - self._t0 - p.last_frame_at_s >= self.idle_timeout_s:
                self._close_file(name, now)
                p.left_at_s = p.last_frame_at_s
            else:
                self._sync(p)

    def _on_pool_event(self, ev: PoolEvent) -> None:
        name = self._keys.get(ev.participant)
        if name is None or ev.kind != "key_ratcheted" or self._ended_wall is not None:
            return
        self.participants[name].key_changes.append(
            KeyChange(time.monotonic() - self._t0, "ratchet", ev.key_index))


"""Soak: a :class:`framecrypt.Pool` under a steady, paced load for minutes while its
workers are SIGKILLed, watching that memory and file descriptors stay flat and that
no frame is lost (issue 13).

    python -m framecrypt.bench.soak --duration 180 --kills 6
    python -m framecrypt.bench.soak --transport ipc --workers 2 --rate 6000 --json out.json

Load: ``--participants`` senders, each with an audio (Opus, ~120 B) and a video
(VP8, 0.4–4 KB, a ~20 KB keyframe every 2 s) stream, together ``--rate`` frames/s,
submitted open-loop every 20 ms (a real-time source does not wait for the previous
batch) as one :class:`~framecrypt.batch.FrameBatch` per participant per tick:
``encrypt_batch`` then ``decrypt_batch`` of the sealed outputs, every output compared
with its input; plus ``--per-frame`` single ``encrypt``/``decrypt`` calls per second.
``--kills N`` SIGKILLs a random live worker (``pool.worker_pids()``) N times at even
intervals after the warm-up.

Once a second it samples this process (the broker and the load generator): VmRSS,
split into ring pages (RssShmem) and the rest ("private"), glibc malloc's bytes in use
and free-but-kept (``mallinfo2``), open fds, shared-memory mappings (memfd rings, or
named ``/dev/shm`` segments and how many of those are unlinked); the workers' summed
Rss, Pss and Rss − Shared (``smaps_rollup``); frames/s and the backlog (frames
submitted, not yet opened). After ``close()`` it reports the object types that grew
(``gc``) and the RSS after ``malloc_trim(0)`` (what the allocator kept, not objects).

Checks (exit code 1 when one fails; ``--json`` has every figure):

- **lost**: every frame opens to its input (no error, no mismatch, none unfinished);
- **rss**: private RSS after the last kill (the last sample) is at most that after
  the first kill (the last sample before the second kill) plus
  ``max(--rss-slack-mb, --rss-slack-pct % of it)`` (default 32 MB, 10 %). Ring pages
  are left out: they were reserved in ``/dev/shm`` when the rings were made, and RSS
  only counts how many of them this process has touched so far (each respawn brings
  fresh rings), so they have their own bound:
- **ring pages**: RssShmem never above the rings' size (2 × ring_bytes × workers);
- **fds**, **shm maps**: after the last kill equal to after the first kill, and after
  ``close()`` back to what they were before the pool started;
- **deaths**: no worker died but those the soak killed;
- **recovery**: every killed worker is replaced (all workers READY again) within
  ``--max-recovery-s`` of the kill (default 3 s): a pool that is slow to respawn piles
  up the frames of a real-time source, which is where memory goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import zmq

from framecrypt import Frame, Pool
from framecrypt.batch import BatchResult, FrameBatch
from framecrypt.errors import FramecryptError

TICK_S = 0.02
MB = 1e6


@dataclass
class SoakConfig:
    transport: str = "shm"
    workers: int = 2
    participants: int = 16
    rate: float = 6000.0  # frames/s sealed (each is then opened too), all participants
    duration: float = 120.0  # seconds of load
    kills: int = 0
    warmup: float = 10.0  # seconds before the first kill (the rings' pages get touched)
    per_frame: int = 4  # single encrypt + decrypt calls per second
    placement: str = "pool"
    seed: int = 1
    rss_slack_mb: float = 32.0
    rss_slack_pct: float = 10.0
    max_recovery_s: float = 3.0
    drain_s: float = 30.0
    options: dict[str, Any] = field(default_factory=dict)  # more Pool keywords


# --- /proc readers ------------------------------------------------------------------------


def _status_kb(pid: int | str, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb(pid: int | str = "self") -> float:
    return (_status_kb(pid, "VmRSS:") or 0) * 1024 / MB


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


_libc: Any = None
with contextlib.suppress(OSError):
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if hasattr(_libc, "mallinfo2"):
        _libc.mallinfo2.restype = _MallInfo2


def heap_mb() -> tuple[float | None, float | None]:
    """glibc malloc, all arenas: (MB in use, MB free but kept by the process); Nones
    without glibc >= 2.33. RSS that stays after a burst while "in use" is back down is
    the allocator keeping freed memory, not live objects."""
    if _libc is None or not hasattr(_libc, "mallinfo2"):
        return None, None
    m = _libc.mallinfo2()
    return round((m.uordblks + m.hblkhd) / MB, 1), round(m.fordblks / MB, 1)


def _snapshot() -> dict[str, Any]:
    used, free = heap_mb()
    return {"rss_mb": round(rss_mb(), 1), "fds": open_fds(), "shm_maps": shm_maps()[0],
            "heap_used_mb": used, "heap_free_mb": free}


def _warm_zmq_collector() -> None:
    """pyzmq's zero-copy collector (a thread, a context, 7 fds) starts at the first
    ``copy=False`` send (ipc batches >= 64 KB) and lives as long as the process, not the
    pool: start it the same way before the baseline is taken."""
    with zmq.Context() as ctx, ctx.socket(zmq.PAIR) as a, ctx.socket(zmq.PAIR) as b:
        a.bind("inproc://soak-warm")
        b.connect("inproc://soak-warm")
        a.send(bytes(65536), copy=False)
        b.recv()


def object_counts() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects())


def shm_maps(shm_dir: str = "/dev/shm") -> tuple[int, int]:
    """(shared-memory segments this process maps: memfds and files under ``shm_dir``,
    counted by inode; how many of those files are unlinked)."""
    seen: dict[tuple[str, str], bool] = {}
    prefix = shm_dir.rstrip("/") + "/"
    with open("/proc/self/maps") as f:
        for line in f:
            cols = line.split(maxsplit=5)
            path = cols[5].rstrip("\n") if len(cols) == 6 else ""
            if path.startswith("/memfd:"):
                seen[cols[3], cols[4]] = False
            elif path.startswith(prefix):
                seen[cols[3], cols[4]] = path.endswith(" (deleted)")
    return len(seen), sum(seen.values())


def workers_mem_mb(pids: list[int]) -> dict[str, float | None]:
    """Summed Rss, Pss and Shared (clean + dirty) of processes, from
    ``/proc/PID/smaps_rollup`` (Pss and Shared are None where it cannot be read)."""
    tot = dict.fromkeys(("Rss", "Pss", "Shared_Clean", "Shared_Dirty"), 0)
    rollup = bool(pids)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in tot:
                        tot[key] += int(rest.split()[0])
        except (OSError, ValueError, IndexError):
            rollup = False
            tot["Rss"] += _status_kb(pid, "VmRSS:") or 0
    k = 1024 / MB
    return {"rss": tot["Rss"] * k, "pss": tot["Pss"] * k if rollup else None,
            "shared": (tot["Shared_Clean"] + tot["Shared_Dirty"]) * k if rollup else None}


# --- the load -----------------------------------------------------------------------------


class _Sender:
    """One participant's frames: fixed payload pools, picked in rotation."""

    def __init__(self, name: str, index: int, rng: random.Random, per_tick: float) -> None:
        self.name = name
        self.audio_ssrc = 1000 + 2 * index
        self.video_ssrc = 1001 + 2 * index
        self.audio = [rng.randbytes(rng.randint(90, 160)) for _ in range(64)]
        self.video = [rng.randbytes(rng.randint(400, 4000)) for _ in range(128)]
        self.key = rng.randbytes(20000)
        self.per_tick = per_tick
        self.debt = rng.random()  # stagger the senders
        self.n = 0
        self.key_every = int(2.0 / TICK_S)
        self.ticks = index  # staggered keyframes

    def next_batch(self) -> tuple[list[bytes], list[str], list[bool], list[int]] | None:
        self.debt += self.per_tick
        k = int(self.debt)
        if k <= 0:
            return None
        self.debt -= k
        self.ticks += 1
        frames: list[tuple[bytes, str, bool, int]] = []
        for i in range(k):
            self.n += 1
            if i == 0 and self.ticks % self.key_every == 0:
                frames.append((self.key, "vp8", True, self.video_ssrc))
            elif self.n % 3 == 0:
                frames.append((self.audio[self.n % 64], "opus", False, self.audio_ssrc))
            else:
                frames.append((self.video[self.n % 128], "vp8", False, self.video_ssrc))
        return ([f[0] for f in frames], [f[1] for f in frames], [f[2] for f in frames],
                [f[3] for f in frames])


@dataclass
class _Tally:
    submitted: int = 0
    ok: int = 0
    bytes_ok: int = 0
    mismatches: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return sum(self.errors.values()) + self.mismatches

    @property
    def backlog(self) -> int:
        return self.submitted - self.ok - self.lost


def _outcomes(res: BatchResult) -> list[bytes | FramecryptError]:
    return list(res) if res.failed else list(res.payloads())


async def _round_trip(pool: Pool, s: _Sender, batch: tuple[list[bytes], list[str], list[bool],
                                                             list[int]], t: _Tally) -> None:
    data, codecs, kf, ssrcs = batch
    t.submitted += len(data)
    try:
        sealed = _outcomes(await pool.encrypt_batch(
            s.name, FrameBatch.of(data, codecs, keyframes=kf, ssrc=ssrcs)))
    except FramecryptError as e:  # the whole call failed (PoolClosed, ...)
        t.errors["seal call:" + type(e).__name__] += len(data)
        return
    keep: list[int] = []
    ct: list[bytes] = []
    for i, o in enumerate(sealed):
        if isinstance(o, bytes):
            keep.append(i)
            ct.append(o)
        else:
            t.errors["seal:" + type(o).__name__] += 1
    if not keep:
        return
    try:
        opened = _outcomes(await pool.decrypt_batch(s.name, FrameBatch.of(
            ct, [codecs[i] for i in keep], keyframes=[kf[i] for i in keep],
            ssrc=[ssrcs[i] for i in keep])))
    except FramecryptError as e:
        t.errors["open call:" + type(e).__name__] += len(keep)
        return
    for i, o in zip(keep, opened, strict=True):
        if not isinstance(o, bytes):
            t.errors["open:" + type(o).__name__] += 1
        elif o != data[i]:
            t.mismatches += 1
        else:
            t.ok += 1
            t.bytes_ok += len(o)


async def _one_frame(pool: Pool, s: _Sender, k: int, t: _Tally) -> None:
    t.submitted += 1
    f = Frame(s.video[k % len(s.video)], "vp8", keyframe=False, ssrc=s.video_ssrc + 1_000_000,
              timestamp=k * 3000)
    try:
        sealed = await pool.encrypt(s.name, f)
        opened = await pool.decrypt(s.name, Frame(sealed, "vp8", keyframe=False, ssrc=f.ssrc,
                                                  timestamp=f.timestamp))
    except FramecryptError as e:
        t.errors["frame:" + type(e).__name__] += 1
        return
    if opened != f.data:
        t.mismatches += 1
    else:
        t.ok += 1
        t.bytes_ok += len(opened)


# --- the run ------------------------------------------------------------------------------


def _sample(pool: Pool, el: float, tally: _Tally, fps: float, kills: int) -> dict[str, Any]:
    maps, deleted = shm_maps()
    pids = pool.worker_pids()
    wm = workers_mem_mb(pids)
    st = pool.stats()
    rss, shmem = rss_mb(), (_status_kb("self", "RssShmem:") or 0) * 1024 / MB
    used, free = heap_mb()
    return {"t": round(el, 2), "rss_mb": round(rss, 1), "rss_private_mb": round(rss - shmem, 1),
            "rss_shmem_mb": round(shmem, 1), "heap_used_mb": used, "heap_free_mb": free,
            "py_blocks": sys.getallocatedblocks(), "fds": open_fds(), "shm_maps": maps,
            "shm_maps_deleted": deleted, "workers": len(pids),
            "workers_rss_mb": round(wm["rss"] or 0, 1),
            "workers_pss_mb": None if wm["pss"] is None else round(wm["pss"], 1),
            "workers_private_mb": None if wm["shared"] is None
            else round((wm["rss"] or 0) - wm["shared"], 1),
            "fps": round(fps), "backlog": tally.backlog, "lost": tally.lost,
            "in_flight": st["frames_in_flight"], "deaths": st["worker_deaths"], "kills": kills}


def _progress(m: dict[str, Any]) -> str:
    return (f"[{m['t']:6.1f}s] rss {m['rss_mb']:.0f} MB (private {m['rss_private_mb']:.0f}, "
            f"rings {m['rss_shmem_mb']:.0f}; malloc {m['heap_used_mb']} used "
            f"{m['heap_free_mb']} free) fds {m['fds']} shm maps {m['shm_maps']} "
            f"({m['shm_maps_deleted']} unlinked) | workers {m['workers']} rss "
            f"{m['workers_rss_mb']:.0f} pss {m['workers_pss_mb']} private "
            f"{m['workers_private_mb']} MB | {m['fps']} frames/s backlog {m['backlog']} "
            f"lost {m['lost']} deaths {m['deaths']}")


async def soak(cfg: SoakConfig, progress: Callable[[str], None] | None = None,
               every: float = 5.0) -> dict[str, Any]:
    """Run one soak; returns the report (``report["ok"]``: every check passed)."""
    say = progress or (lambda line: None)
    rng = random.Random(cfg.seed)
    _warm_zmq_collector()
    objs0 = object_counts()
    before = _snapshot()
    pool = Pool(workers=cfg.workers, transport=cfg.transport, placement=cfg.placement,
                **cfg.options)
    await pool.start()
    tally = _Tally()
    tasks: set[asyncio.Task[None]] = set()
    try:
        senders = [_Sender(f"p{i}", i, rng, cfg.rate / cfg.participants * TICK_S)
                   for i in range(cfg.participants)]
        for s in senders:
            await pool.set_key(s.name, s.name.encode().ljust(32, b"#"))
        samples, kills = await _drive(cfg, pool, senders, tally, tasks, rng, say, every)
        if tasks:  # drain: every submitted frame gets its outcome (bounded)
            await asyncio.wait(set(tasks), timeout=cfg.drain_s)
        unfinished = tally.backlog
        stats, end = pool.stats(), _snapshot()
        rings_mb = 2 * pool.settings.shm.ring_bytes * cfg.workers / MB \
            if cfg.transport == "shm" else 0.0
    finally:
        for task in list(tasks):
            task.cancel()
        await pool.close()
    tasks.clear()
    del pool, senders
    grown = object_counts()
    grown.subtract(objs0)
    closed = _snapshot()
    closed["objects_grown"] = dict(c for c in grown.most_common(8) if c[1] > 0)
    if _libc is not None and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)  # what the allocator kept is free memory, not live objects
        closed["rss_after_malloc_trim_mb"] = round(rss_mb(), 1)
    return _report(cfg, samples, kills, tally, unfinished, stats, rings_mb, before, end,
                   closed)


async def _drive(cfg: SoakConfig, pool: Pool, senders: list[_Sender], tally: _Tally,
                 tasks: set[asyncio.Task[None]], rng: random.Random,
                 say: Callable[[str], None], every: float
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The paced load, the kills and the samples for ``cfg.duration`` seconds."""
    loop = asyncio.get_running_loop()

    def spawn(coro: Any) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    span = max(0.0, cfg.duration - cfg.warmup)
    kill_at = [cfg.warmup + i * span / cfg.kills for i in range(cfg.kills)]
    kills: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    t0 = loop.time()
    next_tick, next_sample, next_frame, next_say = t0, t0 + 1.0, t0, t0 + every
    frame_k = 0
    ok_prev, t_prev = 0, t0
    pending_kill: dict[str, Any] | None = None
    while (el := (now := loop.time()) - t0) < cfg.duration:
        if now >= next_tick:  # open loop: one batch per sender per tick, never waiting
            for s in senders:
                b = s.next_batch()
                if b is not None:
                    spawn(_round_trip(pool, s, b, tally))
            next_tick += TICK_S
            if next_tick < now - 1.0:  # far behind (the loop was starved): skip ticks
                next_tick = now
        if cfg.per_frame and now >= next_frame:
            frame_k += 1
            spawn(_one_frame(pool, senders[frame_k % len(senders)], frame_k, tally))
            next_frame += 1.0 / cfg.per_frame
        if kill_at and el >= kill_at[0]:
            kill_at.pop(0)
            pids = pool.worker_pids()
            pending_kill = {"t": round(el, 2), "pid": rng.choice(pids) if pids else None,
                            "recovered_s": None, "backlog_peak": 0}
            if pending_kill["pid"] is not None:
                os.kill(pending_kill["pid"], signal.SIGKILL)
            kills.append(pending_kill)
            say(f"[{el:6.1f}s] SIGKILL worker {pending_kill['pid']} "
                f"(kill {len(kills)}/{cfg.kills})")
        if pending_kill is not None:
            pending_kill["backlog_peak"] = max(pending_kill["backlog_peak"], tally.backlog)
            pids = pool.worker_pids()
            if len(pids) == cfg.workers and pending_kill["pid"] not in pids:
                pending_kill["recovered_s"] = round(el - pending_kill["t"], 3)
                pending_kill = None
        if now >= next_sample:
            smp = _sample(pool, el, tally, (tally.ok - ok_prev) / (now - t_prev), len(kills))
            samples.append(smp)
            ok_prev, t_prev = tally.ok, now
            next_sample += 1.0
            if now >= next_say:
                next_say += every
                say(_progress(smp))
        wake = min(next_tick, next_sample, next_frame if cfg.per_frame else next_tick)
        await asyncio.sleep(max(0.0, wake - loop.time()))
    return samples, kills


def _check(name: str, bound: str, measured: Any, ok: bool) -> dict[str, Any]:
    return {"name": name, "bound": bound, "measured": measured, "pass": bool(ok)}


def _level(samples: list[dict[str, Any]], before: float) -> dict[str, Any] | None:
    """The last sample taken before time ``before``."""
    prior = [s for s in samples if s["t"] < before]
    return prior[-1] if prior else None


def _report(cfg: SoakConfig, samples: list[dict[str, Any]], kills: list[dict[str, Any]],
            tally: _Tally, unfinished: int, stats: dict[str, Any], rings_mb: float,
            before: dict[str, Any], end: dict[str, Any], closed: dict[str, Any]
            ) -> dict[str, Any]:
    checks = [_check("lost", "== 0 (errors + mismatches + unfinished)",
                     {"errors": dict(tally.errors), "mismatches": tally.mismatches,
                      "unfinished": unfinished}, tally.lost + unfinished == 0)]
    first = last = None
    if kills:
        first = _level(samples, kills[1]["t"] if len(kills) > 1 else cfg.duration + 1)
        last = _level(samples, cfg.duration + 1)
    if first is not None and last is not None and len(kills) > 1:
        slack = max(cfg.rss_slack_mb, first["rss_private_mb"] * cfg.rss_slack_pct / 100)
        checks.append(_check(
            "rss", f"private RSS (without ring pages) after last kill <= after first kill + "
            f"{slack:.0f} MB (max({cfg.rss_slack_mb:g} MB, {cfg.rss_slack_pct:g} %))",
            {"after_first_kill": first["rss_private_mb"],
             "after_last_kill": last["rss_private_mb"]},
            last["rss_private_mb"] <= first["rss_private_mb"] + slack))
        checks.append(_check("fds", "after last kill == after first kill",
                             {"after_first_kill": first["fds"], "after_last_kill": last["fds"]},
                             last["fds"] == first["fds"]))
        checks.append(_check("shm maps", "after last kill == after first kill",
                             {"after_first_kill": first["shm_maps"],
                              "after_last_kill": last["shm_maps"]},
                             last["shm_maps"] == first["shm_maps"]))
    if rings_mb:
        peak = max((s["rss_shmem_mb"] for s in samples), default=0.0)
        checks.append(_check("ring pages", f"RssShmem <= the rings' size, 2 x ring_bytes x "
                             f"workers = {rings_mb:.0f} MB", peak, peak <= rings_mb + 1))
    checks.append(_check("closed", "fds and shm maps after close() == before start",
                         {"before": before, "closed": closed},
                         closed["fds"] == before["fds"] and
                         closed["shm_maps"] == before["shm_maps"]))
    slow = [k for k in kills if k["pid"] is not None and
            (k["recovered_s"] is None or k["recovered_s"] > cfg.max_recovery_s)]
    if kills:
        checks.append(_check("recovery", f"every kill: all workers READY within "
                             f"{cfg.max_recovery_s:g} s", [k["recovered_s"] for k in kills],
                             not slow))
    checks.append(_check("deaths", "worker deaths == kills (none the soak did not cause)",
                         stats["worker_deaths"], stats["worker_deaths"] == len(kills)))
    el = samples[-1]["t"] if samples else 0.0
    summary = {
        "frames_submitted": tally.submitted, "frames_ok": tally.ok,
        "lost": tally.lost + unfinished, "fps_mean": round(tally.ok / el) if el else 0,
        "mb_opened": round(tally.bytes_ok / MB, 1), "kills": len(kills),
        "worker_deaths": stats["worker_deaths"], "redispatched": stats["redispatched"],
        "worker_lost": stats["worker_lost"],
        "rss_mb": {"before": before["rss_mb"],
                   "after_first_kill": first["rss_mb"] if first else None,
                   "after_last_kill": last["rss_mb"] if last else None,
                   "peak": max((s["rss_mb"] for s in samples), default=None),
                   "end": end["rss_mb"], "closed": closed["rss_mb"]},
        "workers_mb": {k: [samples[0][f"workers_{k}_mb"], samples[-1][f"workers_{k}_mb"]]
                       for k in ("rss", "pss", "private")} if samples else {},
        "backlog_peak": max((s["backlog"] for s in samples), default=0),
    }
    return {"config": asdict(cfg), "summary": summary, "kills": kills, "checks": checks,
            "ok": all(c["pass"] for c in checks), "samples": samples,
            "before": before, "end": end, "closed": closed}


def run(cfg: SoakConfig, progress: Callable[[str], None] | None = None,
        every: float = 5.0) -> dict[str, Any]:
    """:func:`soak` on a fresh event loop."""
    return asyncio.run(soak(cfg, progress, every))


def format_summary(rep: dict[str, Any]) -> str:
    s = rep["summary"]
    r = s["rss_mb"]
    lines = [
        f"frames: {s['frames_ok']:,} of {s['frames_submitted']:,} sealed+opened and checked, "
        f"{s['fps_mean']:,}/s mean, lost {s['lost']}; kills {s['kills']}, deaths "
        f"{s['worker_deaths']}, re-dispatched {s['redispatched']}, backlog peak "
        f"{s['backlog_peak']:,}",
        f"broker rss MB: before {r['before']}, after first kill {r['after_first_kill']}, "
        f"after last kill {r['after_last_kill']}, peak {r['peak']}, end {r['end']}, "
        f"after close {r['closed']}, after malloc_trim "
        f"{rep['closed'].get('rss_after_malloc_trim_mb')}",
        "broker malloc MB (in use / free kept): " + ", ".join(
            f"{k} {rep[k]['heap_used_mb']} / {rep[k]['heap_free_mb']}"
            for k in ("before", "end", "closed")),
        f"object types grown over the run (after close): {rep['closed']['objects_grown']}",
        "workers MB, first -> last sample: " + ", ".join(
            f"{k} {a} -> {b}" for k, (a, b) in s["workers_mb"].items()),
        "recovery s per kill: " + ", ".join(str(k["recovered_s"]) for k in rep["kills"]),
    ]
    for c in rep["checks"]:
        lines.append(f"{'PASS' if c['pass'] else 'FAIL'} {c['name']}: {c['bound']}; "
                     f"measured {json.dumps(c['measured'])}")
    return "\n".join(lines)


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


_HELP = {"rate": "frames/s sealed (each then opened), all senders", "duration": "seconds",
         "kills": "SIGKILLs of a random worker, evenly spaced after --warmup seconds",
         "per_frame": "single encrypt+decrypt calls per second",
         "max_recovery_s": "seconds until every worker is READY again after a kill"}
_CHOICES = {"transport": ("shm", "ipc", "inline"), "placement": ("pool", "auto", "inline")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m framecrypt.bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SoakConfig()
    names = [fld.name for fld in fields(SoakConfig) if fld.name != "options"]
    for name in names:
        value = getattr(d, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value,
                       choices=_CHOICES.get(name), help=_HELP.get(name))
    p.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a Pool keyword, e.g. respawn_backoff_s=0.5 (repeatable)")
    p.add_argument("--every", type=float, default=5.0, help="seconds between progress lines")
    p.add_argument("--json", metavar="PATH", help="write the report (samples included)")
    a = p.parse_args(argv)
    if a.workers < 1 or a.participants < 1 or a.rate <= 0 or a.duration <= 0 or a.kills < 0:
        p.error("workers, participants, rate and duration must be positive, kills >= 0")
    cfg = SoakConfig(**{name: getattr(a, name) for name in names}, options=dict(a.option))

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    t = time.monotonic()
    rep = run(cfg, say, a.every)
    print(format_summary(rep))
    print(f"({time.monotonic() - t:.0f} s)")
    if a.json:
        with open(a.json, "w") as out:
            json.dump(rep, out, indent=1)
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

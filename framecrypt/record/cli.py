"""``framecrypt record``: join a room as a trusted member that only subscribes, open
every publisher's frames in a pool and write one file per participant plus
``manifest.json`` (see :mod:`framecrypt.record.session`, ``docs/record.md``).

Keys: ``--passphrase`` (every participant, PBKDF2 as livekit-client), ``--key-env``
(the name of an environment variable holding it, so it stays out of ``ps``), or
``--key-file`` (JSON, per participant and key index, re-read when it changes: keys
rotate while recording). Stops on Ctrl-C / SIGTERM (files finished, exit 0), after
``--duration`` or when the room ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .errors import KeyFileError, RecordError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--relay", metavar="HOST:PORT", required=True,
                   help="the demo relay to join (python -m framecrypt.demo.relay)")
    p.add_argument("--room", required=True, metavar="A,B,...",
                   help="the relay's roster of senders (its --senders), in order")
    p.add_argument("--out", metavar="DIR", default="recording", help="output folder")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--passphrase", help="one passphrase for every participant")
    keys.add_argument("--key-env", metavar="VAR",
                      help="environment variable holding the passphrase")
    keys.add_argument("--key-file", metavar="PATH",
                      help="JSON keys per participant and index, re-read when it changes")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: Ctrl-C or room end)")
    p.add_argument("--manifest", metavar="PATH", help="manifest path (DIR/manifest.json)")
    p.add_argument("--idle-timeout", type=float, default=3.0,
                   help="seconds without frames before a participant's file is finished")
    p.add_argument("--workers", type=int, default=2, help="crypto worker processes (2)")
    p.add_argument("--name", default="recorder", help="the recorder's name at the relay")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress line per second (default: when stderr is a terminal)")


async def record(args: argparse.Namespace, stop: asyncio.Event) -> dict[str, Any]:
    from framecrypt import Pool

    from .keyfile import KeyFile
    from .relay_source import RelaySource
    from .session import Recorder

    room = [n for n in args.room.split(",") if n]
    # a key that changes under a stream fails frames until the new one is known:
    # never mark a key invalid after failures (livekit's failureTolerance -1)
    async with Pool(workers=args.workers, placement="pool",
                    livekit__failure_tolerance=-1) as pool:
        watcher: asyncio.Task[None] | None = None
        if args.key_file:
            kf = KeyFile(args.key_file, pool, room)
            await kf.load()
            watcher = asyncio.create_task(kf.watch())
        else:
            material = args.passphrase if args.passphrase else os.environ.get(args.key_env, "")
            if not material:
                raise KeyFileError(f"environment variable {args.key_env} is empty")
            for name in room:
                await pool.set_key(name, material)
        source = RelaySource(args.relay, room, name=args.name)
        rec = Recorder(pool, source, args.out, manifest_path=args.manifest,
                       idle_timeout_s=args.idle_timeout)
        progress = asyncio.create_task(_progress(rec)) if _show_progress(args) else None
        try:
            return await rec.run(duration=args.duration, stop=stop)
        finally:
            for t in (watcher, progress):
                if t is not None:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t


def _show_progress(args: argparse.Namespace) -> bool:
    return bool(sys.stderr.isatty() if args.progress is None else args.progress)


async def _progress(rec: Any) -> None:
    while True:
        await asyncio.sleep(1.0)
        snap = rec.snapshot()
        line = "  ".join(f"{n}: {s['video']}v/{s['audio']}a"
                         + (f" rejected {s['rejected']}" if s["rejected"] else "")
                         + (f" key {s['key_index']}" if s["key_index"] is not None else "")
                         + f" ({s['state']})" for n, s in snap.items())
        print(f"recording: {line or 'waiting for publishers'}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await record(args, stop)

    try:
        manifest = asyncio.run(main())
    except RecordError as e:
        print(f"framecrypt record: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    for name, p in manifest["participants"].items():
        files = ", ".join(f["path"] for f in p["files"]) or "no file"
        rejected = sum(p["frames_rejected"].values())
        print(f"  {name:<10} {p['frames_written']:>5} frames written ({files})"
              + (f", {rejected} rejected {json.dumps(p['frames_rejected'])}" if rejected else ""))
    print(f"stopped: {manifest['stopped']}; manifest: "
          f"{args.manifest or out / 'manifest.json'}")
    return 0

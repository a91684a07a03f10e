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
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--relay", metavar="HOST:PORT",
                       help="the demo relay to join (python -m framecrypt.demo.relay)")
    where.add_argument("--janus", metavar="URL",
                       help="a Janus WebSocket API (ws://HOST:PORT) to join, with --room-id")
    p.add_argument("--room", required=True, metavar="A,B,...",
                   help="the participants to record (relay: its --senders roster, in "
                        "order; Janus: publisher display names), whose keys are set")
    p.add_argument("--room-id", type=int, default=1234, help="the Janus VideoRoom (1234)")
    p.add_argument("--ice-address", help="Janus: the local address to offer ICE on")
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
    p.add_argument("--name", default="recorder", help="the recorder's name in the room")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="live progress on stderr (default: when stderr is a terminal)")


async def record(args: argparse.Namespace, stop: asyncio.Event) -> dict[str, Any]:
    from framecrypt import Pool

    from .keyfile import KeyFile
    from .relay_source import RelaySource
    from .session import Recorder
    from .source import RoomSource

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
        source: RoomSource
        if args.janus:
            from .janus_source import JanusSource

            source = JanusSource(args.janus, args.room_id, display=args.name,
                                 ice_address=args.ice_address)
        else:
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


def render(rec: Any) -> Any:
    """The live view: the recording per participant, then the pool's frames opened
    and failed per stream (:func:`framecrypt.progress.participants_table`)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from framecrypt.progress import display_name, participants_table

    t = Table(title=f"recording to {rec.out_dir}/ ({rec.source.kind})", title_justify="left")
    for col in ("participant", "state", "file", "video", "audio", "rejected", "key"):
        t.add_column(col, justify="left" if col in ("participant", "state", "file")
                     else "right")
    for name, s in rec.snapshot().items():
        t.add_row(Text(display_name(name)), s["state"], Text(s["file"] or "-"),
                  str(s["video"]), str(s["audio"]), str(s["rejected"]),
                  "-" if s["key_index"] is None else str(s["key_index"]),
                  style="red" if s["rejected"] and not s["frames_written"] else None)
    return Group(t, participants_table(rec.pool.participant_stats(),
                                       title="frames opened in the pool, per stream"))


async def _progress(rec: Any) -> None:
    from rich.console import Console
    from rich.live import Live

    with Live(render(rec), console=Console(stderr=True), refresh_per_second=2,
              transient=False) as live:
        while True:
            await asyncio.sleep(1.0)
            live.update(render(rec))


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

"""``framecrypt`` command line.

``framecrypt demo`` (the default) runs an end-to-end encrypted room: Python
participants (aiortc) send a test pattern and a tone through an untrusted relay
process that has no keys; every frame is sealed and opened in a framecrypt pool. It
needs no flags, runs about 10 s and writes a report folder. With no command the demo's
options work as well: ``framecrypt --participants 4`` is ``framecrypt demo
--participants 4`` (``framecrypt demo -h`` lists them).

``framecrypt formats`` seals and opens real encoded frames in every format and prints
a table of sizes and timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import TextIO

from framecrypt import __version__


@dataclass(frozen=True)
class Row:
    format: str
    variant: str
    frame_bytes: int
    sealed_bytes: int
    clear_bytes: int
    seal_us: float
    open_us: float
    opens: bool
    tamper_rejected: bool


def _time_us(fn: Callable[[], object], reps: int) -> float:
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - t) / reps * 1e6)
    return statistics.median(samples)


def _tamper(sealed: bytes, at: int) -> bytes:
    b = bytearray(sealed)
    b[at] ^= 0x01
    return bytes(b)


def demo_rows(reps: int = 200) -> list[Row]:
    from framecrypt import jitsi, livekit, samples, sframe
    from framecrypt.errors import FramecryptError
    from framecrypt.workers.livekit.codecs import clear_prefix

    rows: list[Row] = []
    video = {c: samples.video(c, 12) for c in ("vp8", "vp9", "h264", "h265", "av1")}
    opus = samples.audio(10)[5]
    lk_key = livekit.derive_key(b"demo raw key material, 32 bytes")
    lk_pass = livekit.derive_key("correct horse battery staple")

    def check(open_fn: Callable[[bytes], bytes], sealed: bytes, plain: bytes,
              tamper_at: int) -> tuple[bool, bool]:
        opens = open_fn(sealed) == plain
        try:
            open_fn(_tamper(sealed, tamper_at))
            rejected = False
        except FramecryptError:
            rejected = True
        return opens, rejected

    cases: list[tuple[str, str, bytes, bool]] = [
        ("vp8", "VP8 key frame", video["vp8"][0].data, True),
        ("vp8", "VP8 delta", video["vp8"][5].data, False),
        ("vp9", "VP9 delta", video["vp9"][5].data, False),
        ("h264", "H.264 IDR+SPS/PPS", video["h264"][0].data, True),
        ("h264", "H.264 non-IDR", video["h264"][5].data, False),
        ("h265", "H.265 IDR+VPS/SPS/PPS", video["h265"][0].data, True),
        ("av1", "AV1 delta (whole frame)", video["av1"][5].data, False),
        ("opus", "Opus 20 ms", opus.data, False),
    ]
    for i, (codec, label, data, kf) in enumerate(cases):
        key = lk_pass if i == 0 else lk_key
        kw = {"key": key, "codec": codec, "keyframe": kf}

        def seal(data: bytes = data, kw: dict = kw) -> bytes:  # type: ignore[type-arg]
            return livekit.protect(data, ssrc=0x1234, timestamp=90000, send_count=1, **kw)

        sealed = seal()
        n, _ = clear_prefix(codec, kf, data)

        def open_(s: bytes, kw: dict = kw) -> bytes:  # type: ignore[type-arg]
            return livekit.unprotect(s, **kw)

        want = data
        if codec in ("h264", "h265"):
            from framecrypt.workers.livekit.h26x import normalize_start_codes

            want = normalize_start_codes(data[:n]) + data[n:]
        opens, rejected = check(open_, sealed, want, len(sealed) // 2)
        rows.append(Row("livekit", label + (" (passphrase)" if i == 0 else ""), len(data),
                        len(sealed), n, _time_us(seal, reps),
                        _time_us(partial(open_, sealed), reps), opens, rejected))

    jk = jitsi.derive_key(bytes(range(32)))
    for codec, label, data, kf in (("vp8", "VP8 key frame", video["vp8"][0].data, True),
                                   ("opus", "Opus 20 ms", opus.data, False)):
        def jseal(data: bytes = data, codec: str = codec, kf: bool = kf) -> bytes:
            return jitsi.protect(data, key=jk, codec=codec, keyframe=kf, ssrc=7,
                                 timestamp=48000, send_count=3)

        sealed = jseal()

        def jopen(s: bytes, codec: str = codec, kf: bool = kf) -> bytes:
            return jitsi.unprotect(s, key=jk, codec=codec, keyframe=kf)

        opens, rejected = check(jopen, sealed, data, len(sealed) // 2)
        rows.append(Row("jitsi", label, len(data), len(sealed), 10 if kf else 1,
                        _time_us(jseal, reps), _time_us(partial(jopen, sealed), reps),
                        opens, rejected))

    frame = video["vp8"][5].data
    base = bytes(range(16))
    for suite in range(1, 9):
        def sseal(suite: int = suite) -> bytes:
            return sframe.protect(suite, base, 0x123, 0x4567, frame)

        sealed = sseal()

        def sopen(s: bytes, suite: int = suite) -> bytes:
            return sframe.unprotect(suite, base, s)[2]

        opens, rejected = check(sopen, sealed, frame, len(sealed) - 1)
        name = sframe.SUITES[suite].name if hasattr(sframe, "SUITES") else f"suite {suite}"
        label = f"0x{suite:04x} {name}" + (" (provisional)" if suite >= 6 else "")
        rows.append(Row("sframe", label, len(frame), len(sealed), 0, _time_us(sseal, reps),
                        _time_us(partial(sopen, sealed), reps), opens, rejected))
    rows += _dave_rows(video, opus.data, reps, check)
    return rows


def _dave_rows(video: dict, opus: bytes, reps: int,  # type: ignore[type-arg]
               check: Callable[[Callable[[bytes], bytes], bytes, bytes, int], tuple[bool, bool]]
               ) -> list[Row]:
    """DAVE (Discord): one sender's base secret, a KeyRatchet kept across calls."""
    from framecrypt import dave

    ratchet = dave.KeyRatchet(bytes(range(16)))
    rows = []
    frames = {c: [f.data for f in fs] for c, fs in video.items()}
    for codec, label, data, clear in dave.demo_cases(frames, opus):
        def dseal(data: bytes = data, codec: str = codec) -> bytes:
            return dave.seal(data, ratchet=ratchet, codec=codec, nonce=7)

        sealed = dseal()

        def dopen(s: bytes) -> bytes:
            return dave.open(s, ratchet=ratchet)

        opens, rejected = check(dopen, sealed, dave.as_received(data, codec),
                                len(sealed) // 2)
        rows.append(Row("dave", label, len(data), len(sealed), clear, _time_us(dseal, reps),
                        _time_us(partial(dopen, sealed), reps), opens, rejected))
    return rows


def print_table(rows: Sequence[Row], out: TextIO = sys.stdout) -> None:
    head = ("format", "variant", "frame B", "sealed B", "+B", "clear B", "seal µs", "open µs",
            "opens", "tamper")
    table = [head] + [
        (r.format, r.variant, str(r.frame_bytes), str(r.sealed_bytes),
         str(r.sealed_bytes - r.frame_bytes), str(r.clear_bytes), f"{r.seal_us:.2f}",
         f"{r.open_us:.2f}", "yes" if r.opens else "NO",
         "rejected" if r.tamper_rejected else "ACCEPTED")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for k, row in enumerate(table):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))), file=out)
        if k == 0:
            print("  ".join("-" * w for w in widths), file=out)


def cmd_formats(args: argparse.Namespace) -> int:
    from framecrypt.tuning import tune_allocator

    tune_allocator()
    from framecrypt import native_info

    info = native_info()
    print(f"framecrypt {__version__}: sealing and opening real encoded frames "
          "(test pattern via PyAV, Opus tone) in every format")
    backend = f", AES-GCM by {info['backend_version']}" if info["path"] == "native" else ""
    print(f"hot loop: {info['path']}{backend} ({info['why']}; FRAMECRYPT_NATIVE=0 forces "
          "the pure-Python core)\n")
    rows = demo_rows(reps=args.reps)
    print_table(rows)
    ok = all(r.opens and r.tamper_rejected for r in rows)
    print("\nall frames opened, every tampered frame rejected" if ok else "\nFAILURES above")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": [asdict(r) for r in rows], "ok": ok, "native": info}, f,
                      indent=2)
        print(f"wrote {args.json}")
    return 0 if ok else 1


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a CURVE key pair: NAME.key (public, give it to peers) and NAME.key_secret
    (0600, keep it)."""
    import os

    import zmq.auth

    os.makedirs(args.dir, mode=0o700, exist_ok=True)
    old = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(args.dir, args.name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    print(f"public key: {public}\nsecret key: {secret} (mode 0600)")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Join a running pool from another host."""
    import signal

    from framecrypt.workers.process import _no_core_dumps, run_remote

    _no_core_dumps()

    if not args.connect.startswith("tcp://"):
        print("framecrypt worker: --connect must be tcp://HOST:PORT", file=sys.stderr)
        return 2
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return run_remote(args.connect, args.server_key, args.secret_key, name=args.name,
                      interval=args.interval, liveness=args.liveness, stop=lambda: stopping)


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from framecrypt.demo.room import DemoOptions, run
    from framecrypt.demo.ui import LiveView

    if not 2 <= args.participants <= 16:
        print("--participants must be 2..16", file=sys.stderr)
        return 2
    live = sys.stdout.isatty() if args.live is None else args.live
    options = DemoOptions(participants=args.participants, duration=args.duration,
                          wrong_key=args.wrong_key, workers=args.workers,
                          report_dir=Path(args.report),
                          json_path=Path(args.json) if args.json else None, live=live,
                          verify=args.verify, churn=args.churn and args.format != "dave",
                          sfu=args.sfu, format=args.format,
                          record_dir=Path(args.record) if args.record else None)
    if args.sfu == "janus":
        from framecrypt.webrtc.janus_server import janus_unavailable

        why = janus_unavailable()
        if why is not None:
            print(f"--sfu janus: {why}", file=sys.stderr)
            return 2
    names = ", ".join(options.names()) + (" + mallory (wrong key)" if args.wrong_key else "")
    via = "Janus's VideoRoom (a real SFU)" if args.sfu == "janus" else "an untrusted relay"
    forwarder = "Janus" if args.sfu == "janus" else "the relay"
    print(f"framecrypt {__version__}: {names} join one room through {via}; "
          f"every frame sealed in a pool of {args.workers} workers ({args.duration:g} s)")
    print("keys: " + ("Discord DAVE frames keyed from one MLS group (framecrypt.keys."
                      "dave_group members, an in-process voice gateway; no join/leave churn "
                      "in this demo yet)" if args.format == "dave" else
                      "Olm key exchange (framecrypt.keys) over the demo's signaling server, "
                      "an in-process bus") + f"; {forwarder} sees only RTP"
          + (f"; {options.joiner()} joins late, {options.leaver()} leaves"
             if options.joiner() else ""))
    view = LiveView(live=live)
    try:
        with view:
            result = asyncio.run(run(options, view))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TimeoutError:
        print("FAILED: the participants did not connect to the relay in time", file=sys.stderr)
        return 1
    view.final()
    s = result.summary
    print(f"\n{'janus' if args.sfu == 'janus' else 'relay'}: "
          f"{s['relay']['frames_forwarded']} frames forwarded, "
          f"{s['relay']['frames_decodable']} decodable without keys")
    for p in s["participants"]:
        print(f"  {p['name']:<8} sent {p['frames_sent']:>4}  decoded {p['frames_decoded']:>4}"
              f"  PSNR {p['psnr_db'] if p['psnr_db'] is not None else '-'} dB  ({p['key']} key)")
    rec = s.get("recording")
    if rec:
        print(f"recording: {rec['dir']}/ (manifest.json)" + (
            f" FAILED: {rec['error']}" if "error" in rec else ""))
        for p in s["participants"]:
            if "frames_written" in p:
                print(f"  {p['name']:<8} {p['frames_written']:>5} frames written, PSNR "
                      f"{p['recording_psnr_db']} dB" + (
                          f", Janus's own recording: {p['janus_decodable_frames']} "
                          "decodable" if "janus_decodable_frames" in p else ""))
    from framecrypt.demo.report import key_lines

    enc = sys.stdout.encoding or "utf-8"
    for line in key_lines(s):
        print(line.encode(enc, "replace").decode(enc, "replace"))
    print(f"report: {options.report_dir}/ (summary.json, relay-vs-participant.png, README.md)"
          + (f"; JSON: {args.json}" if args.json else ""))
    if s["interrupted"]:
        print("interrupted: partial report written", file=sys.stderr)
        return 130
    if not result.ok:
        print("FAILED: " + "; ".join(s["checks_failed"]), file=sys.stderr)
        return 1
    print(f"OK: every participant with the key decoded every other one; {forwarder} "
          "decoded nothing" + ("; mallory (wrong key) decoded nothing" if args.wrong_key else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="framecrypt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"framecrypt {__version__}")
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="an E2EE room through an untrusted relay (default)")
    d.add_argument("--participants", type=int, default=3, help="Python participants (3)")
    d.add_argument("--duration", type=float, default=8.0,
                   help="seconds of media once everyone is connected (8)")
    d.add_argument("--wrong-key", action="store_true",
                   help="add mallory, who joins with a wrong key and decodes nothing")
    d.add_argument("--workers", type=int, default=2, help="crypto worker processes (2)")
    d.add_argument("--report", metavar="DIR", default="report",
                   help="report folder (report/)")
    d.add_argument("--json", metavar="PATH", help="also write the JSON summary here")
    d.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="live table (default: when stdout is a terminal)")
    d.add_argument("--verify", action="store_true",
                   help="SAS verification between every pair: print the 7 emoji")
    d.add_argument("--churn", action=argparse.BooleanOptionalAction, default=True,
                   help="the last participant joins late and the second leaves, to show "
                        "key rotation (default; 3+ participants)")
    d.add_argument("--sfu", choices=("relay", "janus"), default="relay",
                   help="what forwards the media: the embedded relay (default) or a "
                        "private Janus VideoRoom (needs the janus package)")
    d.add_argument("--format", choices=("livekit", "dave"), default="livekit",
                   help="frame format: LiveKit (default, keys over Olm) or Discord DAVE "
                        "(keys from a DAVE MLS group)")
    d.add_argument("--record", metavar="DIR",
                   help="framecrypt record joins the room too and writes one file per "
                        "participant here (docs/record.md)")
    d.set_defaults(func=cmd_demo)
    f = sub.add_parser("formats", help="seal/open real frames in every format, print a table")
    f.add_argument("--reps", type=int, default=200, help="timing repetitions per case")
    f.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    f.set_defaults(func=cmd_formats)
    k = sub.add_parser("keygen", help="write a CURVE key pair (NAME.key, NAME.key_secret 0600)")
    k.add_argument("name")
    k.add_argument("--dir", default=".", help="where to write the files")
    k.set_defaults(func=cmd_keygen)
    w = sub.add_parser("worker", help="join a pool on another host over tcp + CURVE")
    w.add_argument("--connect", required=True, help="tcp://BROKER:PORT")
    w.add_argument("--server-key", required=True, help="the broker's public key file")
    w.add_argument("--secret-key", required=True, help="this worker's secret key file")
    w.add_argument("--name", default="worker", help="prefix of this worker's identity")
    w.add_argument("--interval", type=float, default=0.25, help="heartbeat interval (s)")
    w.add_argument("--liveness", type=int, default=4, help="missed beats before reconnect")
    w.set_defaults(func=cmd_worker)
    from framecrypt import bench

    b = sub.add_parser("bench", help="benchmark harness (--smoke, --full, --json PATH)",
                       description=bench.DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(b)
    b.set_defaults(func=bench.run)
    from framecrypt.record import cli as record_cli

    r = sub.add_parser("record", help="record an E2EE room: one file per participant + "
                       "manifest.json (docs/record.md)", description=record_cli.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    record_cli.add_arguments(r)
    r.set_defaults(func=record_cli.run)
    args = p.parse_args(default_command(argv, sub.choices))
    return int(args.func(args))


def default_command(argv: Sequence[str] | None, commands: Iterable[str]) -> list[str]:
    """``argv`` with ``demo`` in front unless it names a command (or asks for the
    top-level help or version): the bare ``framecrypt`` takes the demo's options."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and (args[0] in commands or args[0] in ("-h", "--help", "--version")):
        return args
    return ["demo", *args]


if __name__ == "__main__":
    raise SystemExit(main())

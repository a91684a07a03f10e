"""The demo's report folder: ``summary.json``, ``README.md``, and pictures — what the
relay can see of a frame next to what a participant decodes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from framecrypt import __version__
from framecrypt.demo import media

if TYPE_CHECKING:
    from framecrypt.demo.room import DemoOptions, Participant

PSNR_OK_DB = 30.0


def summarize(participants: list[Participant], pool: Any, relay: dict[str, Any],
              elapsed: float, options: DemoOptions, *, interrupted: bool,
              relay_view: str | None) -> dict[str, Any]:
    from framecrypt.demo.room import INTRUDER

    st = pool.stats()
    people = []
    checks: list[str] = []
    for p in participants:
        wrong = p.name == INTRUDER
        people.append({
            "name": p.name,
            "key": "wrong" if wrong else "room",
            "frames_sent": p.frames_sent,
            "frames_decoded": p.frames_decoded,
            "psnr_db": p.psnr_db(),
            "audio_frames_sent": p.audio_frames_sent,
            "audio_frames_decoded": sum(v.audio_frames_decoded for v in p.remotes.values()),
            "frames_rejected": p.failed_frames(),
            "keyframe_requests_received": (p.sv.stats.keyframe_requests if p.sv else 0),
            "from": {
                v.source: {"frames_decoded": v.frames_decoded, "psnr_db": v.psnr_db(),
                           "audio_frames_decoded": v.audio_frames_decoded,
                           "tone_hz": v.tone_hz(), "expected_tone_hz": v.expected_hz}
                for v in p.remotes.values()
            },
            "errors": p.errors(),
        })
        for v in p.remotes.values():
            if wrong:
                if v.frames_decoded or v.audio_frames_decoded:
                    checks.append(f"{p.name} (wrong key) decoded frames from {v.source}")
            else:
                ps = v.psnr_db()
                if not v.frames_decoded or ps is None or ps < PSNR_OK_DB:
                    checks.append(f"{p.name} did not decode {v.source}'s video "
                                  f"(PSNR {ps})")
                if not v.audio_frames_decoded:
                    checks.append(f"{p.name} did not decode {v.source}'s audio")
                elif v.tone_hz() != v.expected_hz:
                    checks.append(f"{p.name} heard {v.tone_hz()} Hz from {v.source}, "
                                  f"expected {v.expected_hz}")
    if relay.get("frames_decodable"):
        checks.append("the relay decoded frames")
    if not relay.get("frames_forwarded"):
        checks.append("the relay forwarded nothing")
    ok_total = st["frames_ok"]
    return {
        "framecrypt": __version__,
        "format": st["format"],
        "duration_s": round(elapsed, 2),
        "interrupted": interrupted,
        "participants": people,
        "relay": {
            "frames_forwarded": relay.get("frames_forwarded", 0),
            "frames_decodable": relay.get("frames_decodable", 0),
            "frames_received": relay.get("frames_received", 0),
            "decode_attempts": relay.get("decode_attempts", 0),
            "decoder_output": relay.get("decoder_output", 0),
            "best_psnr_db": relay.get("best_psnr_db", 0.0),
            "bytes_forwarded": relay.get("bytes_forwarded", 0),
            "keyframe_requests": relay.get("keyframe_requests", 0),
            "view": relay_view,
        },
        "pool": {
            "workers": len(st["workers"]),
            "transport": st["transport"],
            "placement": st["placement"],
            "frames_ok": ok_total,
            "frames_failed": st["frames_failed"],
            "frames_in_workers": st["frames_pool"],
            "frames_inline": st["frames_inline"],
            "frames_per_s": round(ok_total / elapsed, 1) if elapsed > 0 else 0.0,
            "errors_by_reason": st["errors_by_reason"],
        },
        "checks_failed": checks,
        "ok": not checks and not interrupted,
    }


def write(summary: dict[str, Any], participants: list[Participant],
          options: DemoOptions) -> None:
    """Write the report folder (and ``--json``). Never contains key material."""
    if not summary:
        return
    out = options.report_dir
    out.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, str] = {}
    panels: list[Any] = []
    relay_png = out / "relay.png"
    relay_frame = None
    if summary["relay"].get("view") and relay_png.exists():
        import av

        with av.open(str(relay_png)) as c:
            relay_frame = next(c.decode(video=0))
    panels.append(relay_frame)
    for p in participants:
        view = max(p.remotes.values(), key=lambda v: v.best_psnr, default=None)
        if view is not None and view.best is not None:
            name = f"{p.name}-sees-{view.source}.png"
            (out / name).write_bytes(media.png_bytes(view.best))
            pictures[p.name] = name
        if len(panels) < 2 and view is not None and view.best is not None:
            panels.append(view.best)
    intruder = [p for p in participants if p.name == "mallory"]
    if intruder:
        panels.append(None)  # what the wrong key decodes: nothing (a grey panel)
    if len(panels) >= 2:
        combo = media.side_by_side(panels)
        (out / "relay-vs-participant.png").write_bytes(media.png_bytes(combo))
    summary["pictures"] = pictures
    text = json.dumps(summary, indent=2)
    (out / "summary.json").write_text(text + "\n")
    if options.json_path is not None:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(text + "\n")
    (out / "README.md").write_text(markdown(summary))


def markdown(s: dict[str, Any]) -> str:
    lines = [
        "# framecrypt demo report",
        "",
        f"{len(s['participants'])} participants, {s['duration_s']} s of media through an "
        f"untrusted relay, {s['format']} frame format, pool of {s['pool']['workers']} "
        "workers.",
        "",
        "![relay vs participant](relay-vs-participant.png)",
        "",
        "Left: what the relay gets from the sealed VP8 frames it forwards: "
        + ("what its own VP8 decoder made of one (garbage). "
           if s['relay']['decoder_output'] else
           "its decoder rejected every one, so this is a sealed keyframe's bytes drawn as "
           "pixels. ")
        + f"Of {s['relay']['decode_attempts']} frames, its decoder output "
        f"{s['relay']['decoder_output']} pictures, {s['relay']['frames_decodable']} of them "
        f"the picture that was sent (best luma PSNR {s['relay']['best_psnr_db']} dB). "
        "Middle: a participant with the key decodes the picture."
        + (" Right: what the participant with the wrong key decodes (nothing)."
           if any(p["key"] == "wrong" for p in s["participants"]) else ""),
        "",
        "| participant | key | video sent | video decoded | PSNR (Y) dB | audio sent | "
        "audio decoded | rejected |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in s["participants"]:
        lines.append(f"| {p['name']} | {p['key']} | {p['frames_sent']} | "
                     f"{p['frames_decoded']} | {p['psnr_db'] if p['psnr_db'] is not None else '–'}"
                     f" | {p['audio_frames_sent']} | {p['audio_frames_decoded']} | "
                     f"{p['frames_rejected']} |")
    r, pl = s["relay"], s["pool"]
    lines += [
        "",
        f"Relay: {r['frames_received']} frames in, {r['frames_forwarded']} forwarded "
        f"({r['bytes_forwarded']} B), {r['frames_decodable']} decodable, "
        f"{r['keyframe_requests']} keyframe requests passed on.",
        "",
        f"Pool: {pl['frames_ok']} frames sealed/opened ({pl['frames_per_s']}/s), "
        f"{pl['frames_in_workers']} in worker processes, {pl['frames_inline']} inline, "
        f"{pl['frames_failed']} failed {pl['errors_by_reason'] or ''}.",
        "",
        *(["## Keys", "", "```", *key_lines(s), "```", ""] if s.get("signaling") else []),
        "Result: " + ("OK" if s["ok"] else "FAILED: " + "; ".join(s["checks_failed"])
                      if s["checks_failed"] else "interrupted"),
        "",
    ]
    return "\n".join(lines)


def key_lines(s: dict[str, Any]) -> list[str]:
    """The key exchange part of a summary as text: signaling, SAS, timeline, leaver."""
    lines: list[str] = []
    sig = s.get("signaling") or {}
    if sig:
        lines.append(f"signaling: {sig['messages']} Olm messages over the {sig['server']}")
    for v in s.get("sas") or []:
        a, b = v["pair"]
        same = "match" if v["emoji_a"] == v["emoji_b"] else "DIFFER"
        lines.append(f"SAS {a} <-> {b} ({same}{', verified' if v.get('verified') else ''}):")
        lines.append(f"  {a:<8} {' '.join(v['emoji_a'])}  "
                     f"{' '.join(map(str, v['decimals_a']))}  ({', '.join(v['names_a'])})")
        lines.append(f"  {b:<8} {' '.join(v['emoji_b'])}  "
                     f"{' '.join(map(str, v['decimals_b']))}")
    if s.get("timeline"):
        lines.append("key timeline (s after media start):")
        for e in s["timeline"]:
            what = {"join": "joins: Olm sessions to the others, its key sent over them",
                    "leave": "leaves: stops sending, still subscribed at the relay",
                    "media connected": "media connected through the relay",
                    }.get(e["event"], e["event"])
            extra = ""
            if what == "switch":
                what = "ratchets its key" if e["cause"] == "join" else "switches to a new key"
                extra = f" (index {e['key_index']}, {e['cause']})"
            elif what == "first frame on the new key":
                extra = f" from {e['from']} ({e['cause']})"
            lines.append(f"  {e['t_s']:6.2f}  {e['participant']} {what}{extra}")
    lv = s.get("leaver")
    if lv:
        lines.append(
            f"{lv['name']} left at {lv['left_at_s']} s, the others switched by "
            f"{lv['switched_at_s']} s: it decoded {lv['frames_decoded_after_switch']} frames "
            f"sealed after the switch, rejected {lv['frames_rejected_after_switch']} "
            f"(decoded {lv['frames_decoded_before_switch']} before)")
    return lines

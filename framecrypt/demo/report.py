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


FIGURE = "relay-vs-participant.png"


def write(summary: dict[str, Any], participants: list[Participant],
          options: DemoOptions) -> None:
    """Write the report folder (and ``--json``). Never contains key material.

    ``summary["pictures"]``: the picture each participant decoded best, by participant;
    ``summary["captions"]``: a caption for every picture in the folder, by file name;
    ``summary["figure"]``: the side-by-side picture and what each of its panels shows,
    left to right (None when there is nothing to put next to the relay's view)."""
    if not summary:
        return
    out = options.report_dir
    out.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, str] = {}
    captions: dict[str, str] = {}
    panels: list[Any] = []
    shows: list[str] = []
    relay_png = out / "relay.png"
    relay_frame = None
    if summary["relay"].get("view") and relay_png.exists():
        import av

        with av.open(str(relay_png)) as c:
            relay_frame = next(c.decode(video=0))
        captions[relay_png.name] = relay_caption(summary["relay"])
    panels.append(relay_frame)
    shows.append(relay_caption(summary["relay"]) if relay_frame is not None else
                 "grey: the relay left no picture of what it forwarded")
    for p in participants:
        view = max(p.remotes.values(), key=lambda v: v.best_psnr, default=None)
        if view is None or view.best is None:
            continue
        name = f"{p.name}-sees-{view.source}.png"
        (out / name).write_bytes(media.png_bytes(view.best))
        pictures[p.name] = name
        seen = (f"{p.name} (room key) decodes {view.source}'s video: its best frame, "
                f"luma PSNR {view.best_psnr:.1f} dB against the picture {view.source} sent")
        captions[name] = seen
        if len(panels) < 2:
            panels.append(view.best)
            shows.append(seen)
    intruder = [p for p in participants if p.name == "mallory"]
    if intruder and len(panels) >= 2:
        panels.append(None)  # what the wrong key decodes: nothing (a grey panel)
        shows.append("grey: what mallory, with the wrong key, decodes: nothing")
    figure: dict[str, Any] | None = None
    if len(panels) >= 2:
        combo = media.side_by_side(panels)
        (out / FIGURE).write_bytes(media.png_bytes(combo))
        figure = {"file": FIGURE,
                  "panels": [{"position": pos, "shows": what}
                             for pos, what in zip(positions(len(shows)), shows, strict=True)]}
        captions[FIGURE] = ("The relay's view next to a participant's"
                            + (" and the wrong key's" if len(panels) > 2 else "")
                            + f" ({len(panels)} panels, left to right)")
    summary["pictures"] = pictures
    summary["captions"] = captions
    summary["figure"] = figure
    text = json.dumps(summary, indent=2)
    (out / "summary.json").write_text(text + "\n")
    if options.json_path is not None:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(text + "\n")
    (out / "README.md").write_text(markdown(summary))


def positions(n: int) -> list[str]:
    """Panel positions, left to right: left/right, or left/middle/right."""
    if n <= 2:
        return ["left", "right"][:n]
    return ["left", *(["middle"] * (n - 2)), "right"]


def relay_caption(r: dict[str, Any]) -> str:
    """What relay.png shows (the relay's ``write_view``)."""
    if r.get("decoder_output"):
        what = ("what the relay's own VP8 decoder made of a sealed frame it forwarded "
                "(garbage)")
    else:
        what = ("a sealed keyframe's bytes drawn as pixels (the relay's VP8 decoder "
                "rejected every sealed frame)")
    if not r.get("decoder_output"):
        return f"{what}; it tried {r.get('decode_attempts', 0)} frames"
    return (f"{what}; of {r.get('decode_attempts', 0)} frames its decoder output "
            f"{r.get('decoder_output', 0)} pictures, {r.get('frames_decodable', 0)} of "
            f"them the picture that was sent (best luma PSNR {r.get('best_psnr_db', 0.0)} "
            "dB)")


def markdown(s: dict[str, Any]) -> str:
    lines = [
        "# framecrypt demo report",
        "",
        f"{len(s['participants'])} participants, {s['duration_s']} s of media through an "
        f"untrusted relay, {s['format']} frame format, pool of {s['pool']['workers']} "
        "workers.",
        "",
    ]
    fig = s.get("figure")
    captions: dict[str, str] = s.get("captions") or {}
    if fig:
        lines += [f"![{captions.get(fig['file'], 'the report picture')}]({fig['file']})", "",
                  f"*{captions.get(fig['file'], '')}.* "
                  + " ".join(f"{p['position'].capitalize()}: {p['shows']}."
                             for p in fig["panels"]),
                  ""]
    lines += [
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
    ]
    others = [name for name in captions if not fig or name != fig["file"]]
    if others:
        lines += ["## Pictures", ""]
        for name in others:
            lines += [f"![{name}]({name})", "", f"*{name}: {captions[name]}.*", ""]
    lines += [
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

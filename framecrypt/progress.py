"""A rich renderable of per-participant frame outcomes, for live progress views
(the demo's table, ``framecrypt record``).

``participants_table(pool.participant_stats())`` gives a :class:`rich.table.Table`:
one row per stream (participant, direction, codec and SSRC), frames ok and failed,
the failures by error class and the stream's state; failing streams first, then the
busiest; past ``max_rows`` the rest are summed in one last row. Participant ids are
peer-chosen: they are shown through :func:`~framecrypt.broker.health.sanitize_label`
(printable, bounded, hash-suffixed when changed) and as plain text, never as rich
markup. No key material is in any of it (the stats carry none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.table import Table
from rich.text import Text

from framecrypt.broker.health import ParticipantStats, StreamStats, sanitize_label

__all__ = ["display_name", "participants_table", "stream_name"]

NAME_CHARS = 32


def display_name(participant: str, max_chars: int = NAME_CHARS) -> str:
    """A participant id safe to print: printable, at most ``max_chars`` characters."""
    return sanitize_label(participant, max_chars)


def stream_name(s: StreamStats) -> str:
    """``"open vp8 0x0000162e"``; the overflow stream is ``"open other SSRCs"``."""
    if s.ssrc < 0:
        return f"{s.direction} other SSRCs"
    return f"{s.direction} {s.codec} 0x{s.ssrc:08x}"


def _reasons(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(errors.items(), key=lambda kv: -kv[1]))


def participants_table(stats: Mapping[str, ParticipantStats] | Iterable[ParticipantStats], *,
                       title: str | None = None, max_rows: int = 24) -> Table:
    """A table of every stream of ``stats`` (``pool.participant_stats()`` or its
    values): failing streams first, then by frames; at most ``max_rows`` stream rows,
    the rest summed in a last row."""
    parts = list(stats.values()) if isinstance(stats, Mapping) else list(stats)
    rows = [s for p in parts for s in p.streams]
    rows.sort(key=lambda s: (not s.failing, -(s.frames_ok + s.frames_failed),
                             s.participant, s.direction, s.ssrc))
    t = Table(title=title, title_justify="left", expand=False)
    t.add_column("participant", justify="left")
    t.add_column("stream", justify="left")
    t.add_column("ok", justify="right")
    t.add_column("failed", justify="right")
    t.add_column("why", justify="left")
    t.add_column("state", justify="left")
    shown, rest = rows[:max(0, max_rows)], rows[max(0, max_rows):]
    for s in shown:
        state = Text(f"failing ({s.episode_failed})", style="bold red") if s.failing \
            else Text("ok", style="green")
        t.add_row(Text(display_name(s.participant)), Text(stream_name(s)),
                  str(s.frames_ok), str(s.frames_failed), Text(_reasons(s.errors)), state,
                  style="red" if s.failing and not s.frames_ok else None)
    if rest:
        errors: dict[str, int] = {}
        for s in rest:
            for k, n in s.errors.items():
                errors[k] = errors.get(k, 0) + n
        failing = sum(s.failing for s in rest)
        t.add_row(Text(f"… {len({s.participant for s in rest})} more", style="dim"),
                  Text(f"{len(rest)} streams", style="dim"),
                  str(sum(s.frames_ok for s in rest)), str(sum(s.frames_failed for s in rest)),
                  Text(_reasons(errors)),
                  Text(f"{failing} failing", style="red") if failing else Text("ok"))
    return t

"""Live terminal view of the demo (rich)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from framecrypt.progress import participants_table


def _fmt_psnr(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def render(snap: dict[str, Any], rate: float | None = None, title: str = "") -> Group:
    t = Table(title=title or None, title_justify="left", expand=False)
    for col, just in (("participant", "left"), ("video sent", "right"),
                      ("video decoded", "right"), ("from", "left"), ("PSNR dB", "right"),
                      ("audio sent", "right"), ("audio decoded", "right"),
                      ("rejected", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for p in snap["participants"]:
        bad = p["failed"] and not p["frames_decoded"]
        style = "red" if bad else None
        t.add_row(p["name"], str(p["frames_sent"]), str(p["frames_decoded"]),
                  "\n".join(f"{k} {n}" for k, n in p["from"].items()),
                  _fmt_psnr(p["psnr_db"]), str(p["audio_sent"]), str(p["audio_decoded"]),
                  str(p["failed"]), style=style)
    pool = snap["pool"]
    relay = snap.get("relay") or {}
    lines: list[RenderableType] = [
        Text.assemble(("pool ", "bold"),
                      f"{pool['workers']} workers · {pool['frames_ok']} frames ok"
                      + (f" · {rate:,.0f} frames/s" if rate is not None else "")
                      + f" · {pool['frames_pool']} in workers · {pool['frames_inline']} inline"
                      + f" · {pool['bytes_out'] / 1e6:.1f} MB out"
                      + (" · rejected " + ", ".join(f"{k} {n}" for k, n in pool["errors"].items())
                         if pool["errors"] else "")),
        Text.assemble(("relay ", "bold"),
                      f"{relay.get('frames_received', 0)} frames in · "
                      f"{relay.get('frames_forwarded', 0)} forwarded · "
                      f"{relay.get('frames_decodable', 0)} decodable (it has no keys)"),
        Text(f"{snap['elapsed']:.1f} / {snap['duration']:.0f} s", style="dim"),
    ]
    health = snap.get("health")  # pool.participant_stats(): per stream ok/failed/why
    if health:
        lines.insert(0, participants_table(health, max_rows=12, title=(
            "pool, per stream (X: frames X sends, sealed; X<-Y: frames X opens from Y)")))
    return Group(t, *lines)


class LiveView:
    """``update(snapshot)`` redraws the table; a context manager around the run."""

    def __init__(self, console: Console | None = None, live: bool = True) -> None:
        self.console = console or Console()
        self.live = Live(console=self.console, refresh_per_second=8, transient=False) \
            if live else None
        self._last: tuple[float, int] | None = None
        self.rate: float | None = None
        self.snap: dict[str, Any] | None = None

    def __enter__(self) -> LiveView:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def started(self, participants: int) -> None:
        """Everyone is connected (a line of its own when not live: scripts wait for it)."""
        if self.live is None:
            self.console.print(f"{participants} participants connected: media flowing",
                               highlight=False)
            self.console.file.flush()

    def update(self, snap: dict[str, Any]) -> None:
        now = time.monotonic()
        ok = snap["pool"]["frames_ok"]
        if self._last is not None and now - self._last[0] >= 0.5:
            self.rate = (ok - self._last[1]) / (now - self._last[0])
            self._last = (now, ok)
        elif self._last is None:
            self._last = (now, ok)
        self.snap = snap
        if self.live is not None:
            self.live.update(render(snap, self.rate, "framecrypt demo: E2EE room"))

    def final(self) -> None:
        """Print the last table (when not live)."""
        if self.live is None and self.snap is not None:
            self.console.print(render(self.snap, None, "framecrypt demo: E2EE room"))

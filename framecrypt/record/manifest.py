"""The recording's manifest: a versioned JSON document next to the files
(``manifest.json``), documented in ``docs/record.md``.

Top level (schema ``framecrypt.record/manifest``, version :data:`VERSION`)::

    schema, version, started_at, ended_at (ISO 8601 UTC), duration_s,
    stopped ("duration" | "interrupted" | "room ended: <why>" | "running"),
    room {source, address}, format,
    participants {name: {joined_at_s, left_at_s, last_frame_at_s, frames_written,
                         frames_rejected {reason: n}, keyframe_requests, gaps,
                         key_rotations [...], files [...], tracks {kind: {...}}}},
    totals {participants, frames_written, frames_rejected, gaps, keyframe_requests,
            key_rotations}

Times ``*_s`` are seconds since the recording started. Rejection reasons are error
class names (``AuthenticationFailed``, ``UnknownKey``, ``Overloaded``, ...): no key
material or frame bytes ever go in.

It is rewritten atomically (temporary file + rename) while recording, so a recorder
killed without a chance to finish still leaves a readable manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .tracks import ParticipantState

SCHEMA = "framecrypt.record/manifest"
VERSION = 1


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def build(*, started_wall: float, ended_wall: float | None, duration_s: float,
          stopped: str, source: str, address: str, fmt: str,
          participants: Mapping[str, ParticipantState]) -> dict[str, Any]:
    parts = {name: p.as_dict() for name, p in sorted(participants.items())}
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "started_at": iso(started_wall),
        "ended_at": None if ended_wall is None else iso(ended_wall),
        "duration_s": round(duration_s, 3),
        "stopped": stopped,
        "room": {"source": source, "address": address},
        "format": fmt,
        "participants": parts,
        "totals": {
            "participants": len(parts),
            "frames_written": sum(p["frames_written"] for p in parts.values()),
            "frames_rejected": sum(sum(p["frames_rejected"].values())
                                   for p in parts.values()),
            "gaps": sum(p["gaps"] for p in parts.values()),
            "keyframe_requests": sum(p["keyframe_requests"] for p in parts.values()),
            "key_rotations": sum(len(p["key_rotations"]) for p in parts.values()),
        },
    }


def write(path: Path, manifest: Mapping[str, Any]) -> None:
    """Atomically replace ``path`` with ``manifest`` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)


def validate(manifest: Mapping[str, Any]) -> list[str]:
    """What is wrong with a manifest's shape (empty when it is valid v1)."""
    problems: list[str] = []
    if manifest.get("schema") != SCHEMA:
        problems.append("schema")
    if manifest.get("version") != VERSION:
        problems.append("version")
    for key in ("started_at", "duration_s", "stopped", "room", "format", "participants",
                "totals"):
        if key not in manifest:
            problems.append(f"missing {key}")
    for name, p in dict(manifest.get("participants", {})).items():
        for key in ("frames_written", "frames_rejected", "gaps", "keyframe_requests",
                    "key_rotations", "files", "tracks"):
            if key not in p:
                problems.append(f"participants.{name}: missing {key}")
    return problems

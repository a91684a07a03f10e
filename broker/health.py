"""Per-participant and per-stream frame outcomes, health transitions and bounded
Prometheus labels (sans-I/O: outcomes in, snapshots and events out; no clock, no I/O).

A **stream** is ``(participant, direction, ssrc)``: ``direction`` is ``"seal"``
(frames this process encrypts for the participant) or ``"open"`` (frames it opens
from them), and the SSRC is the one the caller put on the frame. Its codec (and so
its kind, ``audio`` for Opus, ``video`` otherwise) is the codec of its first frame.
SSRCs are peer-chosen: past ``streams`` distinct SSRCs per participant and
direction, the rest are counted together in one overflow stream (``ssrc=-1``,
kind ``other``).

Counts are taken per piece of a batch result (one call per worker answer or inline
run, not one per frame): a one-stream run without failures costs a few dict
updates; failed frames are visited one by one (they already are, to type their
errors).

**Health.** A stream turns *failing* at its first failed frame and *recovers* after
``recover_after`` ok frames in a row; each transition calls ``on_change`` with a
:class:`~framecrypt.broker.events.ParticipantHealth` (so a stream that keeps
failing, or keeps working, says nothing; a hostile sender alternating good and bad
frames stays failing).

**Labels.** Participant ids are peer-chosen strings; Prometheus labels must stay
few and valid. The first ``labels`` participants that have an outcome get a label
of their own (:func:`sanitize_label`: at most ``label_max_chars`` printable
characters, anything else replaced and a hash suffix added, unique among labels);
every other participant is counted under ``participant="_other"``. A label is
sticky — top-N by traffic would move participants in and out of ``_other`` and
make its counters go down — until :meth:`HealthBook.removed`; then the freed label
goes to the next participant with an outcome, whose labelled series start at 0
(what it did before stays in ``_other``), so every exported counter only grows.
Scrape cost is O(labels), never O(participants): ``_other`` is kept up to date as
outcomes arrive.

Snapshots may be taken from another thread (the metrics server's): they copy dicts
with single C-level operations and never mutate the book.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from framecrypt.transports import wire

__all__ = ["OTHER", "HealthBook", "ParticipantHealth", "ParticipantStats", "StreamStats",
           "sanitize_label"]

SEAL, OPEN = "seal", "open"
OTHER = "_other"  # the label of every participant without one of its own
OVERFLOW_SSRC = -1  # the streams of a participant past the per-participant cap, together
DIRECTIONS = {wire.OP_ENCRYPT: SEAL, wire.OP_DECRYPT: OPEN}
_UNSAFE = '\\"~'  # "~" only ever appears in hashed labels, so they cannot be forged

FrameKey = tuple[str, str, str]  # (direction, kind, "ok" | "failed")
ReasonKey = tuple[str, str]  # (direction, error class name)


def codec_name(cid: int) -> str:
    return wire.CODECS[cid] if cid < len(wire.CODECS) else f"codec{cid}"


def kind_of(codec: str) -> str:
    return "audio" if codec == "opus" else "video"


def _digest(name: str, hexchars: int) -> str:
    raw = name.encode("utf-8", "surrogatepass")
    return hashlib.blake2s(raw, digest_size=32).hexdigest()[:hexchars]


def _clean(text: str) -> str:
    return "".join(c if c.isprintable() and c not in _UNSAFE else "_" for c in text)


def sanitize_label(name: str, max_chars: int = 64, *, hexchars: int = 8) -> str:
    """A Prometheus label value (and a safe display name) for a participant id.

    An id of at most ``max_chars`` printable characters without ``\\``, ``"`` or
    ``~`` and other than ``_other`` is its own label. Any other id (too long, control
    or format characters such as bidi overrides, lone surrogates, newlines, empty)
    becomes its first characters with each unsafe one replaced by ``_``, then ``~``
    and ``hexchars`` hex digits of its BLAKE2s hash: at most ``max_chars``
    characters, and distinct ids stay apart (``~`` never appears in an id used as is).
    """
    if 0 < len(name) <= max_chars and name != OTHER and _clean(name) == name:
        return name
    keep = max(0, max_chars - hexchars - 1)
    return f"{_clean(name[:keep])}~{_digest(name, hexchars)}"


@dataclass(frozen=True, slots=True)
class ParticipantHealth:
    """A stream of a participant changed state: ``"failing"`` at its first failed
    frame (``reason``: that frame's error class, ``failed``: the frames that failed in
    the batch that tipped it), ``"recovered"`` after ``metrics.recover_after_frames``
    ok frames in a row (``reason``: its most frequent error class so far, ``failed``:
    the frames that failed while it was failing). ``frames_ok``/``frames_failed``
    are the stream's totals. ``participant`` is the id as given (peer-chosen: escape
    it before display); ``label`` its sanitized Prometheus label or ``"_other"``."""

    participant: str
    label: str
    direction: str  # "seal" | "open"
    ssrc: int  # -1: the participant's streams past metrics.streams_per_participant
    codec: str
    kind: str  # "audio" | "video" | "other"
    state: str  # "failing" | "recovered"
    reason: str
    failed: int
    frames_ok: int
    frames_failed: int


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Outcomes of one stream (see the module docstring). No key material."""

    participant: str
    direction: str  # "seal" | "open"
    ssrc: int  # -1: the participant's streams past the cap, together
    codec: str  # of its first frame ("" for the overflow stream)
    kind: str  # "audio" | "video" | "other"
    frames_ok: int
    frames_failed: int
    errors: Mapping[str, int]  # failed frames by error class name
    failing: bool
    episode_failed: int  # frames failed since it last turned failing (0 when never)


@dataclass(frozen=True, slots=True)
class ParticipantStats:
    """Outcomes of one participant: totals, its Prometheus label, its streams."""

    participant: str
    label: str  # its participant="…" label, or "_other"
    frames_ok: int
    frames_failed: int
    errors: Mapping[str, int]
    streams: tuple[StreamStats, ...]

    @property
    def failing(self) -> bool:
        return any(s.failing for s in self.streams)


class _Stream:
    __slots__ = ("codec", "episode", "errors", "failed", "failing", "kind", "ok", "ok_run",
                 "ssrc")

    def __init__(self, ssrc: int, codec: str, kind: str) -> None:
        self.ssrc = ssrc
        self.codec = codec
        self.kind = kind
        self.ok = self.failed = self.ok_run = self.episode = 0
        self.failing = False
        self.errors: dict[str, int] = {}


class _Part:
    __slots__ = ("export", "failing", "frames", "name", "reasons", "streams", "streams_of")

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: dict[FrameKey, int] = {}
        self.reasons: dict[ReasonKey, int] = {}
        self.streams: dict[tuple[str, int], _Stream] = {}
        self.streams_of = {SEAL: 0, OPEN: 0}  # distinct SSRCs per direction
        self.failing = {SEAL: 0, OPEN: 0}  # failing streams per direction
        # (label, frames at labelling, reasons at labelling); None: counted in _other.
        # Replaced whole, never mutated: a scraping thread reads one consistent tuple.
        self.export: tuple[str, dict[FrameKey, int], dict[ReasonKey, int]] | None = None


def _bump(d: dict[Any, int], key: Any, n: int) -> None:
    d[key] = d.get(key, 0) + n


class HealthBook:
    """The per-participant books of one pool (see the module docstring).

    ``names`` is the ledger's participant list (index → name), read, not copied.
    """

    def __init__(self, names: Sequence[str], *, labels: int = 100, label_max_chars: int = 64,
                 streams: int = 16, recover_after: int = 8) -> None:
        self._names = names
        self.cap = labels
        self.max_chars = label_max_chars
        self.max_streams = streams
        self.recover_after = recover_after
        self._parts: dict[int, _Part] = {}
        self._labelled: dict[int, _Part] = {}
        self._used: set[str] = set()
        self._other_frames: dict[FrameKey, int] = {}
        self._other_reasons: dict[ReasonKey, int] = {}
        self.failing = {SEAL: 0, OPEN: 0}  # failing streams of every participant
        self.on_change: Callable[[ParticipantHealth], None] | None = None

    # --- outcomes ----------------------------------------------------------------------

    def record(self, pidx: int, op: int, ssrcs: array[int], codecs: bytes | bytearray,
               lo: int, hi: int, *, streams: Mapping[int, int] | None = None,
               fails: Sequence[tuple[int, str]] = (), skip: Sequence[int] = ()) -> None:
        """Frames ``[lo, hi)`` of a batch (its ``ssrcs``/``codecs`` columns) have their
        outcome: ``fails`` are ``(index, error class name)``, ``skip`` indexes have none
        yet (they are recorded later), the rest are ok. ``streams``: frames of the
        range per SSRC when the caller knows them (a run counted its own), else they
        are counted here."""
        if hi <= lo:
            return
        p = self._part(pidx)
        direction = DIRECTIONS.get(op, OPEN)
        counts: dict[int, int] = dict(streams) if streams is not None \
            else Counter(ssrcs[lo:hi])
        for i in skip:
            counts[ssrcs[i]] -= 1
        by_ssrc: dict[int, list[tuple[int, str]]] = {}
        for item in fails:
            by_ssrc.setdefault(ssrcs[item[0]], []).append(item)
        for ssrc, total in counts.items():
            s = self._stream(p, direction, ssrc, ssrcs, codecs, lo, hi)
            mine = by_ssrc.get(ssrc)
            self._count(p, s, direction, total - len(mine) if mine else total, mine,
                        ssrcs, hi)

    def fail_range(self, pidx: int, op: int, ssrcs: array[int], codecs: bytes | bytearray,
                   lo: int, hi: int, reason: str) -> None:
        """Frames ``[lo, hi)`` all failed with ``reason`` (refused, closed)."""
        self.record(pidx, op, ssrcs, codecs, lo, hi, fails=[(i, reason) for i in range(lo, hi)])

    def removed(self, pidx: int) -> None:
        """The participant left (``remove_participant``): its label is freed; its
        counts stay readable, and later outcomes of the same name go to ``_other``."""
        p = self._labelled.pop(pidx, None)
        if p is not None and p.export is not None:
            self._used.discard(p.export[0])
            p.export = None

    def _part(self, pidx: int) -> _Part:
        p = self._parts.get(pidx)
        if p is None:
            p = self._parts[pidx] = _Part(self._names[pidx])
        if p.export is None and len(self._labelled) < self.cap:
            self._label(pidx, p)
        return p

    def _label(self, pidx: int, p: _Part) -> None:
        hexchars = 8
        label = sanitize_label(p.name, self.max_chars)
        while label in self._used:  # two hashed labels collide: a longer hash
            if hexchars >= 64:  # a BLAKE2s-256 collision: the index decides
                label = f"{label[:self.max_chars - 12]}~{pidx}"
                break
            hexchars *= 2
            label = sanitize_label(p.name, max(self.max_chars, hexchars + 2),
                                   hexchars=hexchars)
        self._used.add(label)
        p.export = (label, dict(p.frames), dict(p.reasons))
        self._labelled[pidx] = p

    def _stream(self, p: _Part, direction: str, ssrc: int, ssrcs: array[int],
                codecs: bytes | bytearray, lo: int, hi: int) -> _Stream:
        s = p.streams.get((direction, ssrc))
        if s is not None:
            return s
        if p.streams_of[direction] >= self.max_streams:
            s = p.streams.get((direction, OVERFLOW_SSRC))
            if s is None:
                s = p.streams[(direction, OVERFLOW_SSRC)] = _Stream(OVERFLOW_SSRC, "", "other")
            return s
        codec = codec_name(codecs[ssrcs.index(ssrc, lo, hi)])
        p.streams_of[direction] += 1
        s = p.streams[(direction, ssrc)] = _Stream(ssrc, codec, kind_of(codec))
        return s

    def _count(self, p: _Part, s: _Stream, direction: str, nok: int,
               fails: list[tuple[int, str]] | None, ssrcs: array[int], hi: int) -> None:
        other = p.export is None
        if nok:
            s.ok += nok
            key: FrameKey = (direction, s.kind, "ok")
            _bump(p.frames, key, nok)
            if other:
                _bump(self._other_frames, key, nok)
        if not fails:
            s.ok_run += nok
        else:
            nf = len(fails)
            s.failed += nf
            key = (direction, s.kind, "failed")
            _bump(p.frames, key, nf)
            if other:
                _bump(self._other_frames, key, nf)
            for _, reason in fails:
                _bump(s.errors, reason, 1)
                _bump(p.reasons, (direction, reason), 1)
                if other:
                    _bump(self._other_reasons, (direction, reason), 1)
            # the stream's ok frames after its last failure in this range
            last = max(i for i, _ in fails)
            s.ok_run = ssrcs[last + 1 : hi].count(s.ssrc) if s.ssrc != OVERFLOW_SSRC \
                else 0
            if not s.failing:
                s.failing = True
                s.episode = 0
                p.failing[direction] += 1
                self.failing[direction] += 1
                self._emit(p, s, direction, "failing", fails[0][1], nf)
            s.episode += nf
        if s.failing and s.ok_run >= self.recover_after:
            s.failing = False
            p.failing[direction] -= 1
            self.failing[direction] -= 1
            worst = max(s.errors.items(), key=lambda kv: kv[1])[0] if s.errors else ""
            self._emit(p, s, direction, "recovered", worst, s.episode)

    def _emit(self, p: _Part, s: _Stream, direction: str, state: str, reason: str,
              failed: int) -> None:
        cb = self.on_change
        if cb is not None:
            label = p.export[0] if p.export is not None else OTHER
            cb(ParticipantHealth(p.name, label, direction, s.ssrc, s.codec, s.kind, state,
                                 reason, failed, s.ok, s.failed))

    # --- snapshots ---------------------------------------------------------------------

    def participant_stats(self, name: str | None = None) -> dict[str, ParticipantStats]:
        """Every participant's counts (or only ``name``'s), in first-outcome order."""
        out: dict[str, ParticipantStats] = {}
        for p in list(self._parts.values()):
            if name is not None and p.name != name:
                continue
            export = p.export
            streams = tuple(
                StreamStats(p.name, d, s.ssrc, s.codec, s.kind, s.ok, s.failed,
                            dict(s.errors), s.failing, s.episode if s.failing else 0)
                for (d, _), s in list(p.streams.items()))
            errors: dict[str, int] = {}
            for (_, reason), n in list(p.reasons.items()):
                _bump(errors, reason, n)
            out[p.name] = ParticipantStats(
                p.name, export[0] if export is not None else OTHER,
                sum(s.frames_ok for s in streams), sum(s.frames_failed for s in streams),
                errors, streams)
        return out

    def metrics(self) -> dict[str, Any]:
        """The labelled participants' and ``_other``'s counters as plain rows, O(labels):
        ``frames`` rows ``{participant, direction, kind, outcome, value}``, ``errors``
        rows ``{participant, direction, reason, value}``, ``failing`` rows
        ``{participant, direction, value}`` (labelled participants only)."""
        frames: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        failing: list[dict[str, Any]] = []
        others = dict(self.failing)
        for p in list(self._labelled.values()):
            export = p.export
            if export is None:  # freed meanwhile (another thread)
                continue
            label, f0, r0 = export
            for (d, kind, outcome), n in list(p.frames.items()):
                frames.append({"participant": label, "direction": d, "kind": kind,
                               "outcome": outcome, "value": n - f0.get((d, kind, outcome), 0)})
            for (d, reason), n in list(p.reasons.items()):
                errors.append({"participant": label, "direction": d, "reason": reason,
                               "value": n - r0.get((d, reason), 0)})
            for d, n in list(p.failing.items()):
                failing.append({"participant": label, "direction": d, "value": n})
                others[d] -= n
        for (d, kind, outcome), n in list(self._other_frames.items()):
            frames.append({"participant": OTHER, "direction": d, "kind": kind,
                           "outcome": outcome, "value": n})
        for (d, reason), n in list(self._other_reasons.items()):
            errors.append({"participant": OTHER, "direction": d, "reason": reason, "value": n})
        for d, n in others.items():
            failing.append({"participant": OTHER, "direction": d, "value": max(0, n)})
        return {"frames": frames, "errors": errors, "failing": failing,
                "labelled": len(self._labelled), "label_cap": self.cap,
                "tracked": len(self._parts)}

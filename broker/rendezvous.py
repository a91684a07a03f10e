"""Rendezvous (highest-random-weight) hashing of participants onto worker slots:
adding or removing a slot moves only the participants whose best slot changed."""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b


def score(participant: str, slot: str) -> int:
    h = blake2b(digest_size=8)
    h.update(participant.encode("utf-8"))
    h.update(b"\x00")
    h.update(slot.encode("utf-8"))
    return int.from_bytes(h.digest(), "big")


def owner(participant: str, slots: Iterable[str]) -> str:
    """The slot with the highest score for ``participant`` (ties: larger name)."""
    best: tuple[int, str] | None = None
    for s in slots:
        cand = (score(participant, s), s)
        if best is None or cand > best:
            best = cand
    if best is None:
        raise LookupError("no slots")
    return best[1]

"""The broker's key directory: what every participant's keys are, so that a worker
that starts, restarts or takes a participant over can be told (sans-I/O, no clocks).

It holds what the *broker* was given (key material as the application passed it, the
KDF it resolved to, the ratchet generation) and never a derived key: workers derive,
and answer key operations with the KDF they used and the generation they reached,
nothing more. A snapshot replays a participant as key operations: each key as
``keyset`` of its material ratcheted ``generation`` steps (the current index last, so
it ends up current) and, for SFrame, the replay floor of each KID.

DAVE: a sender's base secret per MLS epoch with the broker counter the epoch starts at
(``dave_key``, oldest first, the last :data:`DAVE_EPOCHS`), its passthrough mode, and the
floors its worker reports (start-code retry skew and receiver windows per epoch,
workers/dave/contexts.py): replayed so the next worker continues with the same nonces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DAVE_EPOCHS", "DaveEpoch", "KeyDirectory", "KeyEntry", "KeyOp"]

DAVE_EPOCHS = 3  # as many as a worker keeps (workers/dave/contexts.py MAX_EPOCHS)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key index of a participant. ``repr`` shows no key material."""

    material: bytes | str = field(repr=False)
    kdf: str | None
    generation: int


@dataclass(frozen=True, slots=True)
class KeyOp:
    """A key operation as the wire carries it (``CONTROL op *args``)."""

    op: str
    args: tuple[object, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class DaveEpoch:
    """A DAVE sender's base secret in one MLS epoch. ``repr`` shows no secret."""

    epoch: int
    secret: bytes = field(repr=False)
    base: int  # the first broker counter sealed under it


@dataclass(slots=True)
class _Participant:
    name: str
    keys: dict[int, KeyEntry] = field(default_factory=dict)
    current: int = 0
    dave: list[DaveEpoch] = field(default_factory=list)
    passthrough: bool | None = None


class KeyDirectory:
    """Participants' keys, ratchet generations and SFrame replay floors."""

    def __init__(self, *, sframe: bool) -> None:
        self._p: dict[int, _Participant] = {}
        # SFrame's replay floors, DAVE's skews and windows (other formats report none)
        self.sframe = sframe
        self._floors: dict[int, dict[int, int]] = {}

    def __repr__(self) -> str:
        return f"KeyDirectory(participants={len(self._p)})"

    def __contains__(self, pidx: object) -> bool:
        return pidx in self._p

    def __len__(self) -> int:
        return len(self._p)

    # --- what the broker learns -------------------------------------------------------

    def set_key(self, pidx: int, name: str, index: int, material: bytes | str, kdf: str | None,
                make_current: bool) -> None:
        """A key the worker acknowledged (``kdf``: what it resolved to)."""
        p = self._p.setdefault(pidx, _Participant(name))
        p.keys[index] = KeyEntry(material, kdf, 0)
        if make_current:
            p.current = index

    def ratcheted(self, pidx: int, index: int, generation: int, *, make_current: bool) -> bool:
        """A ratchet step acknowledged or reported by a worker; False when the
        directory does not know that key (or already knows a later generation)."""
        p = self._p.get(pidx)
        entry = p.keys.get(index) if p is not None else None
        if p is None or entry is None or generation <= entry.generation:
            return False
        p.keys[index] = KeyEntry(entry.material, entry.kdf, generation)
        if make_current:
            p.current = index
        return True

    def set_dave_epoch(self, pidx: int, name: str, epoch: DaveEpoch) -> None:
        """A DAVE sender's base secret in an epoch (the same epoch again: replaced);
        floors of epochs no longer kept are dropped."""
        p = self._p.setdefault(pidx, _Participant(name))
        p.dave = [e for e in p.dave if e.epoch != epoch.epoch] + [epoch]
        del p.dave[:-DAVE_EPOCHS]
        kept = {e.epoch for e in p.dave}
        floors = self._floors.get(pidx, {})
        for kid in [k for k in floors if k // 2 not in kept]:
            del floors[kid]

    def set_dave_passthrough(self, pidx: int, name: str, enabled: bool) -> None:
        self._p.setdefault(pidx, _Participant(name)).passthrough = enabled

    def dave_epochs(self, pidx: int) -> list[DaveEpoch]:
        p = self._p.get(pidx)
        return [] if p is None else list(p.dave)

    def remove(self, pidx: int) -> None:
        self._p.pop(pidx, None)
        self._floors.pop(pidx, None)

    def current(self, pidx: int) -> int | None:
        p = self._p.get(pidx)
        return None if p is None else p.current

    def generation(self, pidx: int, index: int) -> int | None:
        p = self._p.get(pidx)
        entry = p.keys.get(index) if p is not None else None
        return None if entry is None else entry.generation

    def raise_floors(self, pidx: int, reported: list[tuple[int, int]]) -> None:
        """SFrame: the highest counter each KID opened (reported with results)."""
        if not reported:
            return
        floors = self._floors.setdefault(pidx, {})
        for kid, ctr in reported:
            if ctr > floors.get(kid, -1):
                floors[kid] = ctr

    def floors(self, pidx: int) -> dict[int, int]:
        return dict(self._floors.get(pidx, {}))

    # --- what a worker is told -------------------------------------------------------

    def snapshot(self, pidx: int) -> list[KeyOp]:
        """``pidx``'s state as key operations for a worker that does not know it."""
        p = self._p.get(pidx)
        if p is None:
            return []
        out = [KeyOp("keyset", (pidx, p.name, index, e.material, e.kdf, e.generation,
                                index == p.current))
               for index, e in sorted(p.keys.items(), key=lambda kv: kv[0] == p.current)]
        out += [KeyOp("dave_key", (pidx, p.name, e.epoch, e.secret, e.base)) for e in p.dave]
        if p.passthrough is not None:
            out.append(KeyOp("dave_passthrough", (pidx, p.name, p.passthrough)))
        floors = self._floors.get(pidx)
        if floors:
            out.append(KeyOp("replay_floor", (pidx, [[k, c] for k, c in floors.items()])))
        return out

"""SFrame keys from MLS (RFC 9605 §5.2): KID layout and per-epoch receiver keys.

We do not implement MLS. Once per epoch the caller runs its MLS library's exporter::

    base_key = MLS-Exporter("SFrame 1.0 Base Key", "", AEAD.Nk)

(:data:`EXPORTER_LABEL`, :data:`EXPORTER_CONTEXT`, :func:`exporter_length`) and
hands us the output. Every member shares that base key; per-sender keys differ
only because the KID enters the key-schedule labels (§4.4.2). The KID is::

    KID = (context << (S + E)) + (sender_index << E) + (epoch mod 2**E)

where ``E`` is chosen by the application and ``S`` is the smallest value with
``group_size <= 2**S``. When an epoch with the same low ``E`` bits as a held one
arrives, the old epoch is dropped (§5.2: receivers MUST).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from framecrypt.errors import InvalidKeyMaterial, InvalidParameter, UnknownKey

from .context import Commit, ReceiveSlot, SFrameKey
from .header import BytesLike
from .keyschedule import check_base_key
from .suites import CipherSuite, get_suite

EXPORTER_LABEL = b"SFrame 1.0 Base Key"
EXPORTER_CONTEXT = b""


def exporter_length(suite: int | CipherSuite) -> int:
    """Bytes to ask the MLS exporter for: the suite's Nk (RFC 9605 §5.2)."""
    return get_suite(suite).nk


def sender_bits(group_size: int) -> int:
    """``S``: the smallest value with ``group_size <= 2**S`` (RFC 9605 §5.2)."""
    if group_size < 1:
        raise InvalidParameter("group size must be at least 1")
    return (group_size - 1).bit_length()


@dataclass(frozen=True, slots=True)
class MlsKid:
    """The fields of an MLS-layout KID."""

    context: int
    sender_index: int
    epoch_low: int  # epoch mod 2**E


@dataclass(frozen=True, slots=True)
class MlsKidLayout:
    """``KID = (context << (S+E)) + (sender_index << E) + (epoch mod 2**E)`` (RFC 9605 §5.2)."""

    epoch_bits: int  # E
    sender_bits: int  # S

    def __post_init__(self) -> None:
        if self.epoch_bits < 0 or self.sender_bits < 0 or self.epoch_bits + self.sender_bits > 64:
            raise InvalidParameter("MLS KID layout needs E >= 0, S >= 0 and S + E <= 64")

    @classmethod
    def for_group(cls, epoch_bits: int, group_size: int) -> MlsKidLayout:
        """The layout for a group of ``group_size`` members (``S`` from :func:`sender_bits`)."""
        return cls(epoch_bits, sender_bits(group_size))

    def kid(self, sender_index: int, epoch: int, context: int = 0) -> int:
        """The KID for a sender's frames in an epoch."""
        if not 0 <= sender_index < 1 << self.sender_bits:
            raise InvalidParameter("sender index does not fit in S bits")
        if epoch < 0 or context < 0:
            raise InvalidParameter("epoch and context must not be negative")
        shift = self.sender_bits + self.epoch_bits
        kid = (
            (context << shift)
            + (sender_index << self.epoch_bits)
            + (epoch & ((1 << self.epoch_bits) - 1))
        )
        if kid >= 1 << 64:
            raise InvalidParameter("context does not fit the 64-bit KID")
        return kid

    def split(self, kid: int) -> MlsKid:
        """``(context, sender_index, epoch mod 2**E)`` of a KID."""
        e, s = self.epoch_bits, self.sender_bits
        return MlsKid(kid >> (s + e), (kid >> e) & ((1 << s) - 1), kid & ((1 << e) - 1))


class _Epoch:
    __slots__ = ("base_key", "epoch", "group_size", "layout", "slots")

    def __init__(self, epoch: int, base_key: bytes, group_size: int, layout: MlsKidLayout) -> None:
        self.epoch = epoch
        self.base_key = base_key
        self.group_size = group_size
        self.layout = layout
        self.slots: dict[int, ReceiveSlot] = {}


class MlsKeySource:
    """Receiver keys of MLS epochs, as a :class:`~.context.KeySource`.

    A KID's low ``E`` bits pick the epoch, the next ``S`` bits (``S`` of that
    epoch's group size) the sender, which must be below the group size; the
    remaining high bits are the application's context. A sender's key is derived
    on first use and kept only once a frame authenticated under it.
    """

    __slots__ = ("_epochs", "epoch_bits", "suite")

    def __init__(self, suite: int | CipherSuite, *, epoch_bits: int) -> None:
        if not 0 <= epoch_bits <= 63:
            raise InvalidParameter("epoch bits E must be in [0, 63]")
        self.suite = get_suite(suite)
        self.epoch_bits = epoch_bits
        self._epochs: dict[int, _Epoch] = {}

    def layout(self, group_size: int) -> MlsKidLayout:
        """The KID layout for a group of that size."""
        return MlsKidLayout.for_group(self.epoch_bits, group_size)

    def add_epoch(self, epoch: int, exporter_secret: BytesLike, group_size: int) -> int | None:
        """Hold ``epoch`` with the MLS exporter output for it (Nk bytes).

        Drops the held epoch with the same low ``E`` bits and returns its number
        (None if there was none). An epoch older than the one it would replace is
        refused; adding a held epoch again with the same secret changes nothing.
        """
        base_key = check_base_key(exporter_secret)
        if len(base_key) != self.suite.nk:
            raise InvalidKeyMaterial("MLS exporter output must be Nk bytes for the suite")
        if epoch < 0:
            raise InvalidParameter("epoch must not be negative")
        layout = self.layout(group_size)
        low = epoch & ((1 << self.epoch_bits) - 1)
        old = self._epochs.get(low)
        if old is not None and old.epoch > epoch:
            raise InvalidParameter("epoch is older than the held epoch with the same low bits")
        if (
            old is not None
            and old.epoch == epoch
            and old.group_size == group_size
            and hmac.compare_digest(old.base_key, base_key)
        ):
            return None  # already held: keep its keys and replay windows
        self._epochs[low] = _Epoch(epoch, base_key, group_size, layout)
        return None if old is None or old.epoch == epoch else old.epoch

    def remove_epoch(self, epoch: int) -> None:
        """Forget ``epoch``. Raises :class:`UnknownKey` if it is not held."""
        low = epoch & ((1 << self.epoch_bits) - 1)
        held = self._epochs.get(low)
        if held is None or held.epoch != epoch:
            raise UnknownKey(epoch)
        del self._epochs[low]

    @property
    def epochs(self) -> frozenset[int]:
        """The epochs held."""
        return frozenset(e.epoch for e in self._epochs.values())

    def sender_kid(self, epoch: int, sender_index: int, context: int = 0) -> int:
        """The KID a member uses to send in a held epoch."""
        held = self._epochs.get(epoch & ((1 << self.epoch_bits) - 1))
        if held is None or held.epoch != epoch:
            raise UnknownKey(epoch)
        if sender_index >= held.group_size:
            raise InvalidParameter("sender index must be below the group size")
        return held.layout.kid(sender_index, epoch, context)

    def sender_key(self, epoch: int, sender_index: int, context: int = 0) -> SFrameKey:
        """The :class:`SFrameKey` a member sends with in a held epoch."""
        kid = self.sender_kid(epoch, sender_index, context)
        held = self._epochs[epoch & ((1 << self.epoch_bits) - 1)]
        return SFrameKey.derive(self.suite, held.base_key, kid)

    def find(self, kid: int) -> tuple[ReceiveSlot, Commit | None] | None:
        """The key for ``kid`` if it names a held epoch and a sender of its group."""
        held = self._epochs.get(kid & ((1 << self.epoch_bits) - 1))
        if held is None:
            return None
        slot = held.slots.get(kid)
        if slot is not None:
            return slot, None
        if held.layout.split(kid).sender_index >= held.group_size:
            return None
        slot = ReceiveSlot(SFrameKey.derive(self.suite, held.base_key, kid))
        new_slot = slot

        def commit() -> None:
            held.slots.setdefault(kid, new_slot)

        return slot, commit

    def __repr__(self) -> str:
        return (
            f"MlsKeySource(suite=0x{self.suite.id:04x}, E={self.epoch_bits}, "
            f"epochs={sorted(self.epochs)})"
        )


__all__ = [
    "EXPORTER_CONTEXT",
    "EXPORTER_LABEL",
    "MlsKeySource",
    "MlsKid",
    "MlsKidLayout",
    "exporter_length",
    "sender_bits",
]

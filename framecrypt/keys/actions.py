"""What a :class:`~framecrypt.keys.policy.Member` asks its caller to do: the actions.

Every input of the sans-I/O key policy returns a list of :class:`Action`\\ s, to carry
out *in order*: :class:`Send` (an envelope for one participant), :class:`SetKey`,
:class:`RatchetKey` and :class:`RemoveKeys` (for the participant's
:class:`framecrypt.Pool`), and events (subclasses of :class:`Event`) that only report.
"""

from __future__ import annotations

from dataclasses import dataclass

from .envelope import Message
from .sas import SasResult


class Action:
    """Something the caller must do (base class)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Send(Action):
    """Send ``message`` (see :func:`framecrypt.keys.envelope.to_json`) to ``to``."""

    to: str
    message: Message


@dataclass(frozen=True, slots=True, repr=False)
class SetKey(Action):
    """``pool.set_key(participant, material, index)`` (``index`` already reduced to the
    key ring). The repr never shows the material."""

    participant: str
    material: bytes
    index: int

    def __repr__(self) -> str:
        return f"SetKey({self.participant!r}, index={self.index}, {len(self.material)} B)"


@dataclass(frozen=True, slots=True)
class RatchetKey(Action):
    """``pool.ratchet_key(participant, index)``."""

    participant: str
    index: int


@dataclass(frozen=True, slots=True)
class RemoveKeys(Action):
    """``pool.remove_participant(participant)``."""

    participant: str


class Event(Action):
    """Something to report (no pool or network work)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ChannelReady(Event):
    peer: str


@dataclass(frozen=True, slots=True)
class PeerKeyUpdated(Event):
    peer: str
    key_index: int


@dataclass(frozen=True, slots=True)
class PeerKeyDisabled(Event):
    peer: str


@dataclass(frozen=True, slots=True)
class KeyRatcheted(Event):
    """We ratcheted our own key in place (someone joined)."""

    key_index: int
    at: float
    cause: str = "join"


@dataclass(frozen=True, slots=True)
class KeySwitched(Event):
    """We now seal with a new key (``cause``: ``start``, ``leave``, ``manual``)."""

    key_index: int
    at: float
    cause: str
    acked: int = 0
    timed_out: int = 0


@dataclass(frozen=True, slots=True)
class KeyAckTimeout(Event):
    peer: str
    key_index: int


@dataclass(frozen=True, slots=True)
class VisitorKeyUpdated(Event):
    """The visitor key changed here (``cause``: ``received``, ``created``, ``rotated``)."""

    key_index: int
    at: float
    cause: str


@dataclass(frozen=True, slots=True)
class SasAvailable(Event):
    peer: str


@dataclass(frozen=True, slots=True)
class SasReady(Event):
    """Show ``result.emoji`` / ``result.decimals`` to the user, then call
    :meth:`~framecrypt.keys.policy.Member.confirm_sas`."""

    peer: str
    result: SasResult


@dataclass(frozen=True, slots=True)
class SasVerified(Event):
    peer: str


@dataclass(frozen=True, slots=True)
class SasFailed(Event):
    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class PingRtt(Event):
    peer: str
    rtt_s: float


@dataclass(frozen=True, slots=True)
class PingFailed(Event):
    peer: str
    misses: int


@dataclass(frozen=True, slots=True)
class ErrorReceived(Event):
    """The peer sent an ``error`` envelope."""

    peer: str
    error: str


__all__ = [
    "Action",
    "ChannelReady",
    "ErrorReceived",
    "Event",
    "KeyAckTimeout",
    "KeyRatcheted",
    "KeySwitched",
    "PeerKeyDisabled",
    "PeerKeyUpdated",
    "PingFailed",
    "PingRtt",
    "RatchetKey",
    "RemoveKeys",
    "SasAvailable",
    "SasFailed",
    "SasReady",
    "SasVerified",
    "Send",
    "SetKey",
    "VisitorKeyUpdated",
]

"""Automatic key policy (Jitsi-like), visitors, SAS and ping: the sans-I/O participant.

:class:`Member` is one participant's whole key-management state machine. It owns the
participant's Olm identity, its pairwise :class:`~framecrypt.keys.olm.OlmChannel`\\ s,
its own media key, the visitor key, SAS verifications and ping trackers. Inputs are
method calls that take ``now`` (seconds, any monotonic clock); each returns a list of
:class:`Action`\\ s to carry out *in order*, and :attr:`Member.deadline` says when
:meth:`Member.tick` must be called next. Nothing sleeps, reads a clock or does I/O;
randomness (media keys) and request ids are injected.

Actions: :class:`Send` (an envelope for one participant), :class:`SetKey`,
:class:`RatchetKey` and :class:`RemoveKeys` (for the participant's
:class:`framecrypt.Pool`) and events (subclasses of :class:`Event`). The asyncio
driver (:mod:`framecrypt.keys.driver`) applies them to a pool and a signaling channel.

Policy (lib-jitsi-meet ``ManagedKeyHandler`` + ``OlmAdapter``, with the differences
noted):

* **start**: a fresh random 32-byte key at index 0 (:class:`SetKey` for ourselves).
  Sessions: the participant with the lower id sends ``session-init``.
* **someone joins** (debounced ``join_debounce_s``, at most ``max_delay_s`` after the
  first join): every member ratchets its own key in place (same index; peers follow by
  ratchet-on-failure). Unlike Jitsi, a joiner is not given our key until that ratchet
  happened (``hold_key_for_joiners``), so it never gets a key that sealed frames from
  before it joined.
* **someone leaves** (debounced ``leave_debounce_s``): the leaver's keys are removed at
  once; then a new random key at index + 1 is sent in ``key-info`` to every remaining
  member and we switch to it when all acked or after ``ack_timeout_s``. A leave during
  that wait from someone who already got the new key restarts the rotation.
* **visitors** are view-only: they get no member key and no member mesh. The
  *visitor-key holder*, the member with the lowest id, keeps Olm sessions with the
  visitors and a shared random visitor key ``V``. Each member seals its frames for
  visitors under ``HKDF(V, info=member id)`` (pool participant ``"<id>#visitors"``);
  a visitor opens member ``m``'s frames with that key registered as ``m``. The holder
  rotates ``V`` when a member or (configurable) a visitor leaves: first to the visitors
  (acks or timeout), then to the members, who switch on receipt. Members' own keys are
  never touched by it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from framecrypt import jitsi
from framecrypt.workers.livekit.kdf import Kdf

from .envelope import (
    KEY_INFO,
    KEY_INFO_ACK,
    PING,
    PONG,
    SAS_KINDS,
    SESSION_ACK,
    VISITOR_KEY,
    VISITOR_KEY_ACK,
    Encrypted,
    ErrorMessage,
    Message,
    SessionAck,
    SessionInit,
)
from .errors import UnexpectedMessage, UnknownSession, VerificationFailed
from .olm import MediaKey, OlmChannel, OlmIdentity, Opened, default_uuid
from .ping import PingConfig, PingTracker
from .sas import SasResult, SasStyle, SasVerification

Role = Literal["member", "visitor"]
KeyFormat = Literal["jitsi", "livekit"]

VISITOR_KEY_SALT = b"framecrypt visitor key"


def visitor_stream_key(visitor_key: bytes, member_id: str) -> bytes:
    """Member ``member_id``'s 32-byte key material for sealing to visitors:
    HKDF-SHA256(V, salt ``"framecrypt visitor key"``, info = member id). Distinct per
    member, so two members never share a (key, IV) space."""
    return HKDF(SHA256(), 32, VISITOR_KEY_SALT, member_id.encode()).derive(visitor_key)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Knobs of the key policy (defaults: lib-jitsi-meet's 5 s debounce and ack wait)."""

    ratchet_on_join: bool = True
    rotate_on_leave: bool = True
    join_debounce_s: float = 5.0
    leave_debounce_s: float = 5.0
    max_delay_s: float = 15.0
    ack_timeout_s: float = 5.0
    hold_key_for_joiners: bool = True
    keyring_size: int = 16
    format: KeyFormat = "jitsi"
    strict: bool = True
    sas_style: SasStyle = "framecrypt"
    ping: PingConfig | None = None
    rotate_visitor_key_on_visitor_leave: bool = True
    visitor_suffix: str = "#visitors"
    key_bytes: int = 32

    def __post_init__(self) -> None:
        for name in ("join_debounce_s", "leave_debounce_s", "max_delay_s", "ack_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 1 <= self.keyring_size <= 256:
            raise ValueError("keyring_size must be 1..256")
        if self.format not in ("jitsi", "livekit"):
            raise ValueError("format must be 'jitsi' or 'livekit'")
        if not 16 <= self.key_bytes <= 64:
            raise ValueError("key_bytes must be 16..64")


# --- actions ----------------------------------------------------------------------------


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
    :meth:`Member.confirm_sas`."""

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


# --- internal state ---------------------------------------------------------------------


@dataclass(slots=True, repr=False)
class _Rotation:
    key: MediaKey
    cause: str
    deadline: float
    waiting: dict[str, str] = field(default_factory=dict)  # peer -> uuid of the message
    recipients: set[str] = field(default_factory=set)
    acked: int = 0


@dataclass(slots=True)
class _Debounce:
    at: float | None = None
    first: float | None = None
    cause: str = ""

    def trigger(self, now: float, delay: float, max_delay: float, cause: str) -> None:
        if self.first is None:
            self.first = now
            self.cause = cause
        self.at = min(now + delay, self.first + max(max_delay, delay))

    def due(self, now: float) -> bool:
        return self.at is not None and now >= self.at

    def clear(self) -> str:
        cause = self.cause
        self.at = self.first = None
        self.cause = ""
        return cause


class Member:
    """One participant's key management (see the module doc).

    ``participant_id``: this participant's id (ids are compared as strings: the lower
    one initiates Olm sessions and the lowest member holds the visitor key). ``role``:
    ``"member"`` or ``"visitor"``. ``rng(n)`` returns ``n`` random bytes (media keys);
    ``uuid_factory()`` returns request ids."""

    def __init__(self, participant_id: str, *, role: Role = "member",
                 identity: OlmIdentity | None = None, config: PolicyConfig | None = None,
                 rng: Callable[[int], bytes] = os.urandom,
                 uuid_factory: Callable[[], str] = default_uuid) -> None:
        if role not in ("member", "visitor"):
            raise ValueError("role must be 'member' or 'visitor'")
        if not isinstance(participant_id, str) or not participant_id:
            raise ValueError("participant_id must be a non-empty str")
        self.id = participant_id
        self.role: Role = role
        self.identity = identity if identity is not None else OlmIdentity()
        self.config = config if config is not None else PolicyConfig()
        self._rng = rng
        self._uuid = uuid_factory
        if self.config.format == "jitsi":
            self._ratchet: Callable[[bytes], bytes] = jitsi.ratchet
        else:
            self._ratchet = Kdf.livekit("hkdf").ratchet
        self._started = False
        self._members: set[str] = set()
        self._visitors: set[str] = set()
        self._presence: dict[str, dict[str, str]] = {}
        self._channels: dict[str, OlmChannel] = {}
        self._key: MediaKey | None = None
        self._pending: _Rotation | None = None
        self._ratchet_timer = _Debounce()
        self._rotate_timer = _Debounce()
        self._hold: set[str] = set()
        self._peer_keys: dict[str, MediaKey] = {}
        self._vkey: MediaKey | None = None
        self._vpending: _Rotation | None = None
        self._vrotate_timer = _Debounce()
        self._vgrace_at: float | None = None
        self._holder_inherited = False     # became holder in a room that may have a key
        self._sas: dict[str, SasVerification] = {}
        self._ping: dict[str, PingTracker] = {}

    def __repr__(self) -> str:
        key = "-" if self._key is None else str(self._key.index)
        return (f"Member({self.id!r}, role={self.role}, members={len(self._members)}, "
                f"visitors={len(self._visitors)}, key_index={key})")

    # --- public state ------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    @property
    def current_key(self) -> MediaKey | None:
        """Our own media key (members; ``None`` for visitors)."""
        return self._key

    @property
    def pending_key_index(self) -> int | None:
        return None if self._pending is None else self._pending.key.index

    @property
    def visitor_key(self) -> MediaKey | None:
        return self._vkey

    @property
    def visitor_stream(self) -> str | None:
        """Pool participant under which this member seals frames for visitors (``None``
        until a visitor key exists, and for visitors)."""
        if self.role != "member" or self._vkey is None:
            return None
        return self.id + self.config.visitor_suffix

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self._members)

    @property
    def visitors(self) -> frozenset[str]:
        return frozenset(self._visitors)

    def peer_key(self, peer: str) -> MediaKey | None:
        """The last media key ``peer`` sent us (before any ratchet-on-failure)."""
        return self._peer_keys.get(peer)

    def channel(self, peer: str) -> OlmChannel | None:
        return self._channels.get(peer)

    def verified(self, peer: str) -> bool:
        s = self._sas.get(peer)
        return s is not None and s.verified

    @property
    def holder(self) -> str | None:
        """The visitor-key holder: the member with the lowest id."""
        ids = set(self._members)
        if self.role == "member":
            ids.add(self.id)
        return min(ids) if ids else None

    def identity_keys(self) -> dict[str, str]:
        return self.identity.identity_keys()

    @property
    def deadline(self) -> float | None:
        """When :meth:`tick` must be called next (``None``: nothing scheduled)."""
        times = [t for t in (self._ratchet_timer.at, self._rotate_timer.at,
                             self._vrotate_timer.at, self._vgrace_at) if t is not None]
        if self._pending is not None:
            times.append(self._pending.deadline)
        if self._vpending is not None:
            times.append(self._vpending.deadline)
        times.extend(t.deadline for t in self._ping.values())
        return min(times) if times else None

    # --- membership --------------------------------------------------------------------

    def start(self, now: float, members: Iterable[str] = (), visitors: Iterable[str] = (), *,
              identity_keys: Mapping[str, Mapping[str, str]] | None = None) -> list[Action]:
        """Enter the room with these participants already present."""
        if self._started:
            raise UnexpectedMessage("already started")
        self._started = True
        out: list[Action] = []
        for peer, keys in (identity_keys or {}).items():
            self._presence[peer] = dict(keys)
        if self.role == "member":
            self._key = MediaKey(self._new_material(), 0)
            out.append(SetKey(self.id, self._key.material or b"", self._pidx(0)))
            out.append(KeySwitched(0, now, "start"))
        for m in members:
            if m != self.id:
                self._members.add(m)
        for v in visitors:
            if v != self.id:
                self._visitors.add(v)
        self._holder_inherited = (self.role == "member" and self.holder == self.id
                                  and bool(self._members))
        for peer in sorted(self._members | self._visitors):
            if self._wants_channel(peer):
                out += self._open_channel(peer)
        out += self._visitor_setup(now)
        return out

    def join(self, peer: str, now: float, *, visitor: bool = False,
             identity_keys: Mapping[str, str] | None = None) -> list[Action]:
        """``peer`` joined the room (``visitor=True``: as a view-only visitor)."""
        self._check_started()
        if peer == self.id or peer in self._members or peer in self._visitors:
            return []
        if identity_keys is not None:
            self._presence[peer] = dict(identity_keys)
        out: list[Action] = []
        old_holder = self.holder
        if visitor:
            self._visitors.add(peer)
        else:
            self._members.add(peer)
            if self.role == "member" and self.config.ratchet_on_join:
                self._ratchet_timer.trigger(now, self.config.join_debounce_s,
                                            self.config.max_delay_s, "join")
                if self.config.hold_key_for_joiners:
                    self._hold.add(peer)
            if self.role == "visitor" and self._vkey is not None:
                out += self._visitor_set_member_key(peer, self._vkey)
        if self._wants_channel(peer):
            out += self._open_channel(peer)
        if self.holder != old_holder:
            out += self._holder_changed(now, old_holder)
        elif visitor:
            out += self._visitor_setup(now)
        return out

    def leave(self, peer: str, now: float) -> list[Action]:
        """``peer`` left the room: its keys go at once; rotations are scheduled."""
        self._check_started()
        was_member = peer in self._members
        if not was_member and peer not in self._visitors:
            return []
        old_holder = self.holder
        self._members.discard(peer)
        self._visitors.discard(peer)
        self._hold.discard(peer)
        self._presence.pop(peer, None)
        self._close_channel(peer)
        out: list[Action] = []
        if was_member:
            self._peer_keys.pop(peer, None)
            out.append(RemoveKeys(peer))
        if self.role == "member" and was_member:
            restart = self._pending is not None and peer in self._pending.recipients
            if restart:
                self._pending = None          # the leaver got the new key: start over
            if self.config.rotate_on_leave or restart:
                self._rotate_timer.trigger(now, self.config.leave_debounce_s,
                                           self.config.max_delay_s, "leave")
        new_holder = self.holder
        if new_holder != old_holder:
            out += self._holder_changed(now, old_holder)
        if self.role == "member" and new_holder == self.id:
            if self._vpending is not None and peer in self._vpending.recipients:
                self._vpending = None
            if was_member or self.config.rotate_visitor_key_on_visitor_leave:
                if self._visitors or self._vkey is not None:
                    self._vrotate_timer.trigger(now, self.config.leave_debounce_s,
                                                self.config.max_delay_s, "leave")
        return out

    def rekey(self, now: float, cause: str = "manual") -> list[Action]:
        """Rotate our own key now (new random key at index + 1, switch after acks)."""
        self._check_started()
        if self.role != "member":
            raise UnexpectedMessage("visitors have no media key")
        return self._begin_rotation(now, cause)

    # --- input -------------------------------------------------------------------------

    def receive(self, peer: str, msg: Message, now: float) -> list[Action]:
        """Feed one envelope from ``peer``. Raises a
        :class:`~framecrypt.keys.errors.KeyExchangeError` for a message that is refused
        (forged, replayed, out of order, out of turn, from an unknown participant)."""
        self._check_started()
        if peer not in self._members and peer not in self._visitors:
            raise UnknownSession(peer, "unknown participant")
        if isinstance(msg, ErrorMessage):
            return [ErrorReceived(peer, msg.error)]
        if msg.KIND in SAS_KINDS:
            return self._on_sas(peer, msg, now)
        if isinstance(msg, SessionInit):
            if not self._wants_channel(peer):
                raise UnexpectedMessage("no session wanted with this participant", peer)
            ch = self._channels.get(peer)
            if ch is None:
                ch = self._new_channel(peer)
            ack = ch.accept(msg, self._key_for(peer))
            return [Send(peer, ack), *self._on_ready(peer, now)]
        if not isinstance(msg, Encrypted):
            raise UnexpectedMessage("unsupported message", peer)
        ch = self._channels.get(peer)
        if ch is None or (not ch.ready and not isinstance(msg, SessionAck)):
            raise UnknownSession(peer)
        opened = ch.open(msg)
        if isinstance(msg, SessionAck):
            return self._on_opened(peer, opened, now) + self._on_ready(peer, now)
        return self._on_opened(peer, opened, now)

    def tick(self, now: float) -> list[Action]:
        """Run whatever is due at ``now`` (see :attr:`deadline`)."""
        out: list[Action] = []
        if not self._started:
            return out
        if self._ratchet_timer.due(now):
            self._ratchet_timer.clear()
            out += self._do_ratchet(now)
        if self._rotate_timer.due(now):
            cause = self._rotate_timer.clear()
            out += self._begin_rotation(now, cause)
        if self._pending is not None and now >= self._pending.deadline:
            out += self._switch(now)
        if self._vgrace_at is not None and now >= self._vgrace_at:
            self._vgrace_at = None
            if self._vkey is None and self.holder == self.id and self._visitors:
                out += self._begin_vrotation(now, "created")
        if self._vrotate_timer.due(now):
            cause = self._vrotate_timer.clear()
            if self.holder == self.id:
                out += self._begin_vrotation(now, cause)
        if self._vpending is not None and now >= self._vpending.deadline:
            out += self._finish_vrotation(now)
        for peer, tracker in list(self._ping.items()):
            if now < tracker.deadline:
                continue
            res = tracker.poll(now)
            if res.failed:
                out.append(PingFailed(peer, tracker.misses))
            ch = self._channels.get(peer)
            if res.send_id is not None and ch is not None and ch.ready:
                out.append(Send(peer, ch.seal(PING, ch.new_uuid(), ping_id=res.send_id)))
        return out

    # --- SAS ---------------------------------------------------------------------------

    def start_verification(self, peer: str, now: float) -> list[Action]:
        """Start SAS verification of the channel with ``peer``."""
        ch = self._channels.get(peer)
        if ch is None or not ch.ready:
            raise UnknownSession(peer)
        sas = self._new_sas(peer, ch)
        self._sas[peer] = sas
        return [Send(peer, sas.start())]

    def confirm_sas(self, peer: str, matches: bool, now: float) -> list[Action]:
        """The user compared the emoji with ``peer``'s: ``matches`` or not."""
        sas = self._sas.get(peer)
        if sas is None:
            raise UnknownSession(peer, "no verification")
        try:
            step = sas.confirm(matches)
        except VerificationFailed as e:
            return [SasFailed(peer, e.reason)]
        out: list[Action] = [Send(peer, m) for m in step.replies]
        if step.verified:
            out.append(SasVerified(peer))
        return out

    def _new_sas(self, peer: str, ch: OlmChannel) -> SasVerification:
        presence = self._presence.get(peer, {})
        return SasVerification(
            self.id, peer, own_ed25519=self.identity.ed25519,
            own_curve25519=self.identity.curve25519,
            peer_ed25519=presence.get("ed25519") or ch.peer_ed25519,
            peer_curve25519=ch.peer_curve25519, style=self.config.sas_style,
            uuid_factory=self._uuid)

    def _on_sas(self, peer: str, msg: Message, now: float) -> list[Action]:
        ch = self._channels.get(peer)
        if ch is None or not ch.ready:
            raise UnknownSession(peer)
        sas = self._sas.get(peer)
        if msg.KIND == "sas-start" and (sas is None or sas.state in ("done", "failed")):
            sas = self._new_sas(peer, ch)
            self._sas[peer] = sas
        if sas is None:
            raise UnexpectedMessage("no verification in progress", peer)
        try:
            step = sas.receive(msg)
        except VerificationFailed as e:
            return [SasFailed(peer, e.reason)]
        out: list[Action] = [Send(peer, m) for m in step.replies]
        if step.ready is not None:
            out.append(SasReady(peer, step.ready))
        if step.verified:
            out.append(SasVerified(peer))
        return out

    # --- channels ----------------------------------------------------------------------

    def _check_started(self) -> None:
        if not self._started:
            raise UnexpectedMessage("start() first")

    def _pidx(self, index: int) -> int:
        return index % self.config.keyring_size

    def _new_material(self) -> bytes:
        m = self._rng(self.config.key_bytes)
        if len(m) != self.config.key_bytes:
            raise ValueError("rng returned the wrong number of bytes")
        return bytes(m)

    def _wants_channel(self, peer: str) -> bool:
        if self.role == "member":
            if peer in self._members:
                return True
            return peer in self._visitors and self.holder == self.id
        return peer in self._members and peer == self.holder

    def _new_channel(self, peer: str) -> OlmChannel:
        presence = self._presence.get(peer, {})
        ch = OlmChannel(self.identity, self.id, peer,
                        peer_curve25519=presence.get("curve25519"),
                        peer_ed25519=presence.get("ed25519"),
                        strict=self.config.strict, uuid_factory=self._uuid)
        self._channels[peer] = ch
        return ch

    def _open_channel(self, peer: str) -> list[Action]:
        if peer in self._channels:
            return []
        ch = self._new_channel(peer)
        if ch.initiator:
            return [Send(peer, ch.initiate())]
        return []

    def _close_channel(self, peer: str) -> None:
        ch = self._channels.pop(peer, None)
        if ch is not None:
            ch.close()
        self._sas.pop(peer, None)
        self._ping.pop(peer, None)

    def _key_for(self, peer: str) -> MediaKey | None:
        """Our key-info for ``peer`` (``None`` = send ``{}``)."""
        if self.role != "member" or peer not in self._members or peer in self._hold:
            return None
        return self._key

    def _send_key(self, peer: str, kind: str, key: MediaKey | None,
                  uuid: str | None = None) -> tuple[Send, str]:
        ch = self._channels[peer]
        uid = uuid if uuid is not None else ch.new_uuid()
        return Send(peer, ch.seal(kind, uid, key=key)), uid

    def _on_ready(self, peer: str, now: float) -> list[Action]:
        ch = self._channels[peer]
        out: list[Action] = [ChannelReady(peer), SasAvailable(peer)]
        if self.config.ping is not None:
            self._ping[peer] = PingTracker(self.config.ping, now)
        if self.role == "member" and peer in self._members:
            if ch.initiator and peer not in self._hold:
                out.append(self._send_key(peer, KEY_INFO, self._key)[0])
            if self._pending is not None and peer not in self._pending.recipients:
                out.append(self._send_key(peer, KEY_INFO, self._pending.key)[0])
            if self._vkey is not None:
                out.append(self._send_key(peer, VISITOR_KEY, self._vkey)[0])
        elif self.role == "member" and peer in self._visitors:
            if self._vkey is not None:
                out.append(self._send_key(peer, VISITOR_KEY, self._vkey)[0])
            else:
                out += self._visitor_setup(now)
        return out

    def _on_opened(self, peer: str, opened: Opened, now: float) -> list[Action]:
        out: list[Action] = []
        kind = opened.kind
        if kind in (SESSION_ACK, KEY_INFO, KEY_INFO_ACK):
            if opened.key is not None:
                if self.role != "member" or peer not in self._members:
                    raise UnexpectedMessage("media key on a visitor channel", peer)
                out += self._update_peer_key(peer, opened.key)
            if kind == KEY_INFO:
                out.append(self._send_key(peer, KEY_INFO_ACK, self._key_for(peer),
                                          opened.uuid)[0])
            elif kind == KEY_INFO_ACK:
                out += self._on_ack(peer, opened.uuid, now)
        elif kind == VISITOR_KEY:
            if peer not in self._members:
                raise UnexpectedMessage("visitor key from a non-member", peer)
            if opened.key is None or opened.key.material is None:
                raise UnexpectedMessage("visitor key without a key", peer)
            out += self._receive_visitor_key(opened.key, now)
            out.append(self._send_key(peer, VISITOR_KEY_ACK, None, opened.uuid)[0])
        elif kind == VISITOR_KEY_ACK:
            out += self._on_vack(peer, opened.uuid, now)
        elif kind == PING:
            if opened.ping_id is not None:
                ch = self._channels[peer]
                out.append(Send(peer, ch.seal(PONG, opened.uuid, ping_id=opened.ping_id)))
        elif kind == PONG:
            tracker = self._ping.get(peer)
            if tracker is not None and opened.ping_id is not None:
                rtt = tracker.on_pong(opened.ping_id, now)
                if rtt is not None:
                    out.append(PingRtt(peer, rtt))
        return out

    def _update_peer_key(self, peer: str, key: MediaKey) -> list[Action]:
        last = self._peer_keys.get(peer)
        if last is not None and last.material == key.material and last.index == key.index:
            return []
        self._peer_keys[peer] = key
        if key.material is None:
            return [RemoveKeys(peer), PeerKeyDisabled(peer)]
        return [SetKey(peer, key.material, self._pidx(key.index)),
                PeerKeyUpdated(peer, key.index)]

    # --- own key: ratchet and rotation -----------------------------------------------

    def _do_ratchet(self, now: float) -> list[Action]:
        if self.role != "member" or self._key is None or self._key.material is None:
            return []
        self._key = MediaKey(self._ratchet(self._key.material), self._key.index)
        out: list[Action] = [RatchetKey(self.id, self._pidx(self._key.index)),
                             KeyRatcheted(self._key.index, now)]
        held, self._hold = self._hold, set()
        for peer in sorted(held):
            ch = self._channels.get(peer)
            if ch is not None and ch.ready and peer in self._members:
                out.append(self._send_key(peer, KEY_INFO, self._key)[0])
        return out

    def _begin_rotation(self, now: float, cause: str) -> list[Action]:
        if self.role != "member" or self._key is None:
            return []
        self._rotate_timer.clear()
        index = self._key.index + 1
        rot = _Rotation(MediaKey(self._new_material(), index), cause,
                        now + self.config.ack_timeout_s)
        self._pending = rot
        out = self._offer(rot, self._members, KEY_INFO)
        if not rot.waiting:
            out += self._switch(now)
        return out

    def _offer(self, rot: _Rotation, peers: set[str], kind: str) -> list[Action]:
        """Send ``rot``'s key to every peer with a ready channel; each then owes an ack."""
        out: list[Action] = []
        for peer in sorted(peers):
            ch = self._channels.get(peer)
            if ch is None or not ch.ready:
                continue
            send, uid = self._send_key(peer, kind, rot.key)
            rot.waiting[peer] = uid
            rot.recipients.add(peer)
            out.append(send)
        return out

    @staticmethod
    def _acked(rot: _Rotation | None, peer: str, uuid: str) -> bool:
        """Note ``peer``'s ack of ``rot``'s key message ``uuid``; True once nobody owes one."""
        if rot is None or rot.waiting.get(peer) != uuid:
            return False
        del rot.waiting[peer]
        rot.acked += 1
        return not rot.waiting

    def _on_ack(self, peer: str, uuid: str, now: float) -> list[Action]:
        return self._switch(now) if self._acked(self._pending, peer, uuid) else []

    def _switch(self, now: float) -> list[Action]:
        rot = self._pending
        if rot is None or rot.key.material is None:
            return []
        self._pending = None
        out: list[Action] = [KeyAckTimeout(p, rot.key.index) for p in sorted(rot.waiting)]
        self._key = rot.key
        out.append(SetKey(self.id, rot.key.material, self._pidx(rot.key.index)))
        out.append(KeySwitched(rot.key.index, now, rot.cause, rot.acked, len(rot.waiting)))
        return out

    # --- visitor key -------------------------------------------------------------------

    def _visitor_setup(self, now: float) -> list[Action]:
        """Holder with visitors but no visitor key: make one now, unless we took the role
        over in a room where another member may already have one: then give the others
        ``ack_timeout_s`` to hand it to us."""
        if (self.role != "member" or self.holder != self.id or not self._visitors
                or self._vkey is not None or self._vpending is not None):
            return []
        if not self._members or not self._holder_inherited:
            return self._begin_vrotation(now, "created")
        if self._vgrace_at is None:
            self._vgrace_at = now + self.config.ack_timeout_s
        return []

    def _holder_changed(self, now: float, old: str | None) -> list[Action]:
        out: list[Action] = []
        if self.role == "visitor":
            for peer in list(self._channels):
                if peer != self.holder:
                    self._close_channel(peer)
            h = self.holder
            if h is not None:
                out += self._open_channel(h)
            return out
        if self.holder == self.id:
            self._holder_inherited = True
            for v in sorted(self._visitors):
                out += self._open_channel(v)
            out += self._visitor_setup(now)
        else:
            for v in list(self._visitors):
                self._close_channel(v)
            self._vpending = None
            self._vrotate_timer.clear()
            self._vgrace_at = None
        return out

    def _begin_vrotation(self, now: float, cause: str) -> list[Action]:
        if self.role != "member" or self.holder != self.id:
            return []
        self._vgrace_at = None
        index = 0 if self._vkey is None else self._vkey.index + 1
        rot = _Rotation(MediaKey(self._new_material(), index), cause,
                        now + self.config.ack_timeout_s)
        self._vpending = rot
        out = self._offer(rot, self._visitors, VISITOR_KEY)
        if not rot.waiting:
            out += self._finish_vrotation(now)
        return out

    def _on_vack(self, peer: str, uuid: str, now: float) -> list[Action]:
        return self._finish_vrotation(now) if self._acked(self._vpending, peer, uuid) else []

    def _finish_vrotation(self, now: float) -> list[Action]:
        rot = self._vpending
        if rot is None or rot.key.material is None:
            return []
        self._vpending = None
        self._vkey = rot.key
        out: list[Action] = [
            SetKey(self.id + self.config.visitor_suffix,
                   visitor_stream_key(rot.key.material, self.id), self._pidx(rot.key.index)),
            VisitorKeyUpdated(rot.key.index, now,
                              "created" if rot.cause == "created" else "rotated"),
        ]
        for peer in sorted(self._members):
            ch = self._channels.get(peer)
            if ch is not None and ch.ready:
                out.append(self._send_key(peer, VISITOR_KEY, rot.key)[0])
        return out

    def _receive_visitor_key(self, key: MediaKey, now: float) -> list[Action]:
        assert key.material is not None
        cur = self._vkey
        if cur is not None:
            if cur.index == key.index and cur.material == key.material:
                return []
            # never step back: a stale copy (members hand the key on) must not replace a
            # rotated one, or this member would seal for visitors under an old key
            if key.index < cur.index:
                return []
        self._vkey = key
        out: list[Action] = []
        if self.role == "visitor":
            for m in sorted(self._members):
                out += self._visitor_set_member_key(m, key)
        else:
            self._vgrace_at = None
            out.append(SetKey(self.id + self.config.visitor_suffix,
                              visitor_stream_key(key.material, self.id), self._pidx(key.index)))
            if self.holder == self.id and self._vpending is None:
                # we took over as holder: pass the key we were handed on to the visitors
                for v in sorted(self._visitors):
                    ch = self._channels.get(v)
                    if ch is not None and ch.ready:
                        out.append(self._send_key(v, VISITOR_KEY, key)[0])
        out.append(VisitorKeyUpdated(key.index, now, "received"))
        return out

    def _visitor_set_member_key(self, member: str, key: MediaKey) -> list[Action]:
        assert key.material is not None
        return [SetKey(member, visitor_stream_key(key.material, member), self._pidx(key.index))]


__all__ = [
    "VISITOR_KEY_SALT",
    "Action",
    "ChannelReady",
    "ErrorReceived",
    "Event",
    "KeyAckTimeout",
    "KeyFormat",
    "KeyRatcheted",
    "KeySwitched",
    "Member",
    "PeerKeyDisabled",
    "PeerKeyUpdated",
    "PingFailed",
    "PingRtt",
    "PolicyConfig",
    "RatchetKey",
    "RemoveKeys",
    "Role",
    "SasAvailable",
    "SasFailed",
    "SasReady",
    "SasVerified",
    "Send",
    "SetKey",
    "VisitorKeyUpdated",
    "visitor_stream_key",
]

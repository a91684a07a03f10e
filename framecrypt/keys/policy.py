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
  *visitor-key holder*, the member with the lowest id, keeps Olm sessions with the
  visitors and a shared random visitor key from which each member derives the key it
  seals with for visitors; it rotates that key when a member or (configurable) a
  visitor leaves (see :mod:`~framecrypt.keys.visitor_key`).

The parts: :mod:`~framecrypt.keys.config` (:class:`PolicyConfig`),
:mod:`~framecrypt.keys.actions` (the actions and events),
:mod:`~framecrypt.keys.member_state` (the state and the pairwise channels),
:mod:`~framecrypt.keys.rotation` (rotation bookkeeping),
:mod:`~framecrypt.keys.own_key`, :mod:`~framecrypt.keys.visitor_key` and
:mod:`~framecrypt.keys.verification` (SAS); this module puts them together as
:class:`Member`: membership, inputs, timers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .actions import (
    Action,
    ChannelReady,
    ErrorReceived,
    Event,
    KeyAckTimeout,
    KeyRatcheted,
    KeySwitched,
    PeerKeyDisabled,
    PeerKeyUpdated,
    PingFailed,
    PingRtt,
    RatchetKey,
    RemoveKeys,
    SasAvailable,
    SasFailed,
    SasReady,
    SasVerified,
    Send,
    SetKey,
    VisitorKeyUpdated,
)
from .config import KeyFormat, PolicyConfig, Role
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
from .errors import UnexpectedMessage, UnknownSession
from .olm import MediaKey, OlmChannel, Opened
from .own_key import OwnKeyPolicy
from .ping import PingTracker
from .verification import VerificationPolicy
from .visitor_key import VISITOR_KEY_SALT, VisitorKeyPolicy, visitor_stream_key


class Member(OwnKeyPolicy, VisitorKeyPolicy, VerificationPolicy):
    """One participant's key management (see the module doc).

    ``participant_id``: this participant's id (ids are compared as strings: the lower
    one initiates Olm sessions and the lowest member holds the visitor key). ``role``:
    ``"member"`` or ``"visitor"``. ``rng(n)`` returns ``n`` random bytes (media keys);
    ``uuid_factory()`` returns request ids (the constructor and the state it sets up are
    :class:`~framecrypt.keys.member_state.MemberState`'s)."""

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
    # --- channel events ----------------------------------------------------------------

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

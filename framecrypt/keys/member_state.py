"""The state of a :class:`~framecrypt.keys.policy.Member` and its pairwise Olm channels.

:class:`MemberState` holds everything a participant knows (who is in the room, its
channels, its own key, the visitor key, pending rotations, SAS and ping trackers) and
the plumbing the parts of the policy share: which peers get a channel, opening and
closing channels, sealing a key message to one peer and offering a new key to many.
The policy itself is split by responsibility over its subclasses
(:mod:`~framecrypt.keys.own_key`, :mod:`~framecrypt.keys.visitor_key`,
:mod:`~framecrypt.keys.verification`) and :class:`~framecrypt.keys.policy.Member`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from framecrypt import jitsi
from framecrypt.workers.livekit.kdf import Kdf

from .actions import Action, Send
from .config import PolicyConfig, Role
from .errors import UnexpectedMessage
from .olm import MediaKey, OlmChannel, OlmIdentity, default_uuid
from .ping import PingTracker
from .rotation import Debounce, Rotation
from .sas import SasVerification


class MemberState:
    """Everything one participant knows, and its channels (see the module doc; the
    arguments are described at :class:`~framecrypt.keys.policy.Member`)."""

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
        self._pending: Rotation | None = None
        self._ratchet_timer = Debounce()
        self._rotate_timer = Debounce()
        self._hold: set[str] = set()
        self._peer_keys: dict[str, MediaKey] = {}
        self._vkey: MediaKey | None = None
        self._vpending: Rotation | None = None
        self._vrotate_timer = Debounce()
        self._vgrace_at: float | None = None
        self._holder_inherited = False     # became holder in a room that may have a key
        self._sas: dict[str, SasVerification] = {}
        self._ping: dict[str, PingTracker] = {}

    def __repr__(self) -> str:
        key = "-" if self._key is None else str(self._key.index)
        return (f"Member({self.id!r}, role={self.role}, members={len(self._members)}, "
                f"visitors={len(self._visitors)}, key_index={key})")

    @property
    def holder(self) -> str | None:
        """The visitor-key holder: the member with the lowest id."""
        ids = set(self._members)
        if self.role == "member":
            ids.add(self.id)
        return min(ids) if ids else None

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

    def _new_rotation(self, index: int, cause: str, now: float) -> Rotation:
        """A fresh random key at ``index``, to be switched to ``ack_timeout_s`` from now
        at the latest."""
        return Rotation(MediaKey(self._new_material(), index), cause,
                        now + self.config.ack_timeout_s)

    def _offer(self, rot: Rotation, peers: set[str], kind: str) -> list[Action]:
        """Send ``rot``'s key to every peer with a ready channel; each then owes an ack."""
        out: list[Action] = []
        for peer in sorted(peers):
            ch = self._channels.get(peer)
            if ch is None or not ch.ready:
                continue
            send, uid = self._send_key(peer, kind, rot.key)
            rot.offered(peer, uid)
            out.append(send)
        return out


__all__ = ["MemberState"]

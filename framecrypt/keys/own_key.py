"""A member's own media key: ratchet in place when someone joins, rotate when someone
leaves (or on request).

* **ratchet** (:meth:`OwnKeyPolicy._do_ratchet`): same index, peers follow by
  ratchet-on-failure; joiners whose key-info was held back get the ratcheted key now.
* **rotation** (:meth:`OwnKeyPolicy._begin_rotation`): a new random key at index + 1 is
  sent in ``key-info`` to every member with a ready channel; we switch to it when all
  acked or after ``ack_timeout_s`` (:meth:`OwnKeyPolicy._switch`).
"""

from __future__ import annotations

from .actions import Action, KeyAckTimeout, KeyRatcheted, KeySwitched, RatchetKey, SetKey
from .envelope import KEY_INFO
from .member_state import MemberState
from .olm import MediaKey


class OwnKeyPolicy(MemberState):
    """The own-key part of :class:`~framecrypt.keys.policy.Member`."""

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
        rot = self._new_rotation(index, cause, now)
        self._pending = rot
        out = self._offer(rot, self._members, KEY_INFO)
        if not rot.waiting:
            out += self._switch(now)
        return out

    def _on_ack(self, peer: str, uuid: str, now: float) -> list[Action]:
        rot = self._pending
        return self._switch(now) if rot is not None and rot.ack(peer, uuid) else []

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


__all__ = ["OwnKeyPolicy"]

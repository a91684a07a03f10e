"""The visitor key: how members reach view-only visitors.

Visitors get no member key and no member mesh. The *visitor-key holder*, the member
with the lowest id, keeps Olm sessions with the visitors and a shared random visitor
key ``V``. Each member seals its frames for visitors under ``HKDF(V, info=member id)``
(:func:`visitor_stream_key`; pool participant ``"<id>#visitors"``); a visitor opens
member ``m``'s frames with that key registered as ``m``. The holder rotates ``V`` when a
member or (configurable) a visitor leaves: first to the visitors (acks or timeout), then
to the members, who switch on receipt. Members' own keys are never touched by it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .actions import Action, SetKey, VisitorKeyUpdated
from .envelope import VISITOR_KEY
from .member_state import MemberState
from .olm import MediaKey

VISITOR_KEY_SALT = b"framecrypt visitor key"


def visitor_stream_key(visitor_key: bytes, member_id: str) -> bytes:
    """Member ``member_id``'s 32-byte key material for sealing to visitors:
    HKDF-SHA256(V, salt ``"framecrypt visitor key"``, info = member id). Distinct per
    member, so two members never share a (key, IV) space."""
    return HKDF(SHA256(), 32, VISITOR_KEY_SALT, member_id.encode()).derive(visitor_key)


class VisitorKeyPolicy(MemberState):
    """The visitor-key part of :class:`~framecrypt.keys.policy.Member`: the holder's
    rotations, handing the key on, and a visitor's per-member keys."""

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
        rot = self._new_rotation(index, cause, now)
        self._vpending = rot
        out = self._offer(rot, self._visitors, VISITOR_KEY)
        if not rot.waiting:
            out += self._finish_vrotation(now)
        return out

    def _on_vack(self, peer: str, uuid: str, now: float) -> list[Action]:
        rot = self._vpending
        return self._finish_vrotation(now) if rot is not None and rot.ack(peer, uuid) else []

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


__all__ = ["VISITOR_KEY_SALT", "VisitorKeyPolicy", "visitor_stream_key"]

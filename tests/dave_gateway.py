"""A test DAVE voice gateway driving members of three implementations through the
binary opcodes 25-30: davey (Rust, OpenMLS), dave-py (Discord's libdave over mlspp) and
framecrypt's :class:`DaveMember` (rfc9420), all on framecrypt.keys.dave_call's
in-process gateway: each transition's proposals go to every member (in join order, or
as :meth:`Gateway.order` puts them), the first commit wins. Wire formats:
../shared/reference/dave.md.
"""

from __future__ import annotations

from typing import Any

from framecrypt.keys.dave_call import Gateway, LocalMember
from framecrypt.workers.dave import ratchet, receiver, sender

# dave-py's codec numbers (libdave Codec enum) and davey's
DAVE_CODECS = {"opus": 1, "vp8": 2, "vp9": 3, "h264": 4, "h265": 5, "av1": 6}


class Davey:
    kind = "davey"

    def __init__(self, user_id: int, channel: int) -> None:
        import davey
        self.m = davey
        self.user_id = user_id
        self.s = davey.DaveSession(1, user_id, channel)

    def external_sender(self, payload: bytes) -> None:
        self.s.set_external_sender(payload)

    def key_package(self) -> bytes:
        return bytes(self.s.get_serialized_key_package())

    def proposals(self, payload: bytes, recognized: set[int]) -> bytes | None:
        ops = self.m.ProposalsOperationType
        op = ops.append if payload[0] == 0 else ops.revoke
        cw = self.s.process_proposals(op, payload[1:], sorted(recognized))
        if cw is None:
            return None
        return bytes(cw.commit) + (bytes(cw.welcome) if cw.welcome is not None else b"")

    def commit(self, commit: bytes) -> None:
        self.s.process_commit(commit)

    def welcome(self, welcome: bytes, recognized: set[int]) -> None:
        self.s.process_welcome(welcome)

    def epoch_authenticator(self) -> bytes:
        return bytes(self.s.get_epoch_authenticator())

    def voice_privacy_code(self) -> str:
        return str(self.s.voice_privacy_code)

    def pairwise(self, other: int) -> bytes:
        return bytes(self.s.get_pairwise_fingerprint(0, other))

    def seal(self, codec: str, data: bytes) -> bytes:
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        return bytes(self.s.encrypt(media, getattr(self.m.Codec, codec), data))

    def open(self, user_id: int, codec: str, data: bytes) -> bytes | None:
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        try:
            return bytes(self.s.decrypt(user_id, media, data))
        except Exception:
            return None


class DavePy:
    kind = "dave-py"

    def __init__(self, user_id: int, channel: int) -> None:
        import dave
        self.m = dave
        self.user_id = user_id
        self.s = dave.Session()
        self.s.init(1, channel, str(user_id))
        self.enc: Any = None
        self.decs: dict[int, Any] = {}

    def external_sender(self, payload: bytes) -> None:
        self.s.set_external_sender(payload)

    def key_package(self) -> bytes:
        return bytes(self.s.get_marshalled_key_package())

    def proposals(self, payload: bytes, recognized: set[int]) -> bytes | None:
        out = self.s.process_proposals(payload, {str(u) for u in recognized})
        return bytes(out) if out else None

    def _rekey(self, roster: Any) -> None:
        if roster is None or not isinstance(roster, dict):
            return
        self.enc = self.m.Encryptor()
        self.enc.set_key_ratchet(self.s.get_key_ratchet(str(self.user_id)))
        self.decs = {}

    def commit(self, commit: bytes) -> None:
        self._rekey(self.s.process_commit(commit))

    def welcome(self, welcome: bytes, recognized: set[int]) -> None:
        self._rekey(self.s.process_welcome(welcome, {str(u) for u in recognized}))

    def epoch_authenticator(self) -> bytes:
        return bytes(self.s.get_last_epoch_authenticator())

    def seal(self, codec: str, data: bytes) -> bytes:
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        return bytes(self.enc.encrypt(media, DAVE_CODECS[codec], data))

    def open(self, user_id: int, codec: str, data: bytes) -> bytes | None:
        if user_id not in self.decs:
            dec = self.m.Decryptor()
            dec.transition_to_key_ratchet(self.s.get_key_ratchet(str(user_id)))
            self.decs[user_id] = dec
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        out = self.decs[user_id].decrypt(media, data)
        return bytes(out) if out is not None else None


class Framecrypt(LocalMember):
    """framecrypt's member with the pure media layer keyed from its epochs."""

    def __init__(self, user_id: int, channel: int) -> None:
        super().__init__(user_id, channel)
        self.tx: sender.Sender | None = None
        self.rx: dict[int, receiver.Receiver] = {}

    def commit(self, commit: bytes) -> None:
        super().commit(commit)
        self._rekey()

    def welcome(self, welcome: bytes, recognized: set[int]) -> None:
        super().welcome(welcome, recognized)
        self._rekey()

    def _rekey(self) -> None:
        self.tx = sender.Sender(ratchet.KeyRatchet(self.member.base_secret(self.user_id)))
        self.rx = {}

    def epoch_authenticator(self) -> bytes:
        return self.member.epoch_authenticator()

    def seal(self, codec: str, data: bytes) -> bytes:
        assert self.tx is not None
        return self.tx.seal(codec, data)

    def open(self, user_id: int, codec: str, data: bytes) -> bytes | None:
        if user_id not in self.rx:
            if user_id not in self.member.members:
                return None
            rx = receiver.Receiver()
            rx.transition_to_key_ratchet(ratchet.KeyRatchet(self.member.base_secret(user_id)), 0.0)
            self.rx[user_id] = rx
        try:
            return self.rx[user_id].open(data, 0.0, audio=codec == "opus")
        except Exception:
            return None


class Call(Gateway):
    """framecrypt's in-process gateway, remembering each member's implementation."""

    def __init__(self, channel: int) -> None:
        super().__init__(channel)
        self.kinds: dict[int, str] = {}

    def change(self, add: Any = (), remove: Any = ()) -> None:
        add = list(add)
        self.kinds.update({m.user_id: m.kind for m in add})
        super().change(add, remove)

    def join(self, *newcomers: Any) -> None:
        self.change(add=newcomers)

    def remove(self, *user_ids: int) -> None:
        self.change(remove=user_ids)

    @property
    def committer_kinds(self) -> list[str]:
        return [self.kinds[u] for u in self.committers]

    @property
    def leaves(self) -> list[int | None]:
        return self.roster.leaves

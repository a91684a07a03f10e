"""The two outside DAVE implementations as call members of
:class:`framecrypt.keys.dave_call.Gateway` (one method per opcode), with their media
encrypt/decrypt and verification codes: davey (Rust, OpenMLS) and dave-py (Discord's
libdave over mlspp, nanobind). The DAVE bench measures them and the interop tests
(tests/test_dave_group.py) judge framecrypt by them. Both libraries come with the
``test`` extra.
"""

from __future__ import annotations

from typing import Any

# libdave's Codec enum (dave-py takes the numbers)
LIBDAVE_CODECS = {"opus": 1, "vp8": 2, "vp9": 3, "h264": 4, "h265": 5, "av1": 6}


class DaveyMember:
    kind = "davey"

    def __init__(self, user_id: int, channel: int) -> None:
        import davey

        self.m: Any = davey
        self.user_id = user_id
        self.s: Any = davey.DaveSession(1, user_id, channel)

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


class LibdaveMember:
    kind = "dave-py"

    def __init__(self, user_id: int, channel: int) -> None:
        import dave

        self.m: Any = dave
        self.user_id = user_id
        self.s: Any = dave.Session()
        self.s.init(1, channel, str(user_id))
        self.enc: Any = None
        self.decs: dict[int, Any] = {}

    def external_sender(self, payload: bytes) -> None:
        self.s.set_external_sender(payload)

    def key_package(self) -> bytes:
        kp = self.s.get_marshalled_key_package()
        if kp is None:
            raise RuntimeError("dave-py made no key package")
        return bytes(kp)

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
        return bytes(self.enc.encrypt(media, LIBDAVE_CODECS[codec], data))

    def open(self, user_id: int, codec: str, data: bytes) -> bytes | None:
        if user_id not in self.decs:
            dec = self.m.Decryptor()
            dec.transition_to_key_ratchet(self.s.get_key_ratchet(str(user_id)))
            self.decs[user_id] = dec
        media = self.m.MediaType.audio if codec == "opus" else self.m.MediaType.video
        out = self.decs[user_id].decrypt(media, data)
        return bytes(out) if out is not None else None

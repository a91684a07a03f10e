"""The voice gateway's side of a DAVE call: the MLS group's external sender.

Discord's voice gateway is the only external sender of each call's group: it announces
its key (opcode 25), proposes every Add and Remove (opcode 27), picks one commit per
transition and hands Welcomes to joiners. :class:`ExternalSender` signs those proposals
(RFC 9420 §6, §12.1.8: a PublicMessage from sender type ``external``, index 0, no
membership tag, signed as FramedContentTBS without a GroupContext) and
:class:`Roster` keeps the leaf index of each user as RFC 9420 §7.7/§12.1 move them
(leftmost free leaf for an Add, blank on Remove, trailing blanks truncated), so a
Python SFU or a test can run a call of framecrypt, libdave and davey members.
Proved in tests/test_dave_group.py: both libraries accept its messages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from . import mls_wire
from .errors import MlsError

BASIC_IDENTITY = b"\x00\x01\x01\x00"  # what libdave's own test gateway uses


class ExternalSender:
    """Signs a call's Add/Remove proposals; the private key never leaves it."""

    def __init__(self, channel_id: int, identity: bytes = BASIC_IDENTITY) -> None:
        if not 0 <= channel_id < 1 << 64:
            raise MlsError("channel id is an unsigned 64-bit integer")
        self.channel_id = channel_id
        self._identity = identity
        self._key = ec.generate_private_key(ec.SECP256R1())

    def __repr__(self) -> str:
        return f"ExternalSender(channel={self.channel_id})"

    def package(self) -> bytes:
        """Opcode 25: ``vec(signature key) || basic credential``."""
        return (mls_wire.vec(mls_wire.public_key_bytes(self._key))
                + struct.pack(">H", mls_wire.CREDENTIAL_BASIC) + mls_wire.vec(self._identity))

    def add(self, epoch: int, key_package: bytes) -> bytes:
        """An Add proposal MLSMessage for ``key_package`` (walked first: a malformed one
        raises :class:`MlsError` here rather than at every member)."""
        r = mls_wire.Reader(key_package)
        mls_wire.read_key_package(r)
        if not r.done():
            raise MlsError("key package: trailing bytes")
        return self._proposal(epoch, struct.pack(">H", mls_wire.PROPOSAL_ADD) + key_package)

    def remove(self, epoch: int, leaf: int) -> bytes:
        return self._proposal(epoch, struct.pack(">HI", mls_wire.PROPOSAL_REMOVE, leaf))

    def _proposal(self, epoch: int, proposal: bytes) -> bytes:
        content = (mls_wire.vec(struct.pack(">Q", self.channel_id)) + struct.pack(">Q", epoch)
                   + bytes([mls_wire.SENDER_EXTERNAL]) + struct.pack(">I", 0)
                   + mls_wire.vec(b"") + bytes([mls_wire.CONTENT_PROPOSAL]) + proposal)
        header = struct.pack(">HH", mls_wire.VERSION_MLS10, mls_wire.WIRE_PUBLIC)
        tbs = mls_wire.vec(b"MLS 1.0 FramedContentTBS") + mls_wire.vec(header + content)
        return header + content + mls_wire.vec(self._key.sign(tbs, ec.ECDSA(hashes.SHA256())))


@dataclass
class Roster:
    """Leaf index of each user in the call's ratchet tree."""

    leaves: list[int | None] = field(default_factory=list)

    def leaf_of(self, user_id: int) -> int:
        try:
            return self.leaves.index(user_id)
        except ValueError:
            raise MlsError("user not in the call") from None

    def add(self, user_id: int) -> int:
        if user_id in self.leaves:
            raise MlsError("user already in the call")
        if None in self.leaves:
            leaf = self.leaves.index(None)
            self.leaves[leaf] = user_id
            return leaf
        self.leaves.append(user_id)
        return len(self.leaves) - 1

    def remove(self, user_id: int) -> int:
        leaf = self.leaf_of(user_id)
        self.leaves[leaf] = None
        while self.leaves and self.leaves[-1] is None:
            self.leaves.pop()
        return leaf


def proposals_payload(*messages: bytes) -> bytes:
    """Opcode 27 (append): ``u8 0 || vec(concatenated proposal MLSMessages)``."""
    return b"\x00" + mls_wire.vec(b"".join(messages))

"""A DAVE call member: the MLS group of a Discord voice call, as a sans-I/O state machine.

The voice gateway (the group's only external sender) drives it with DAVE's binary
opcodes; each method takes one opcode's payload and returns what the member sends back
or what changed (frozen dataclasses), never touching a socket:

====  =========================  ===============================================
op    gateway → member           method
====  =========================  ===============================================
25    external sender package    :meth:`DaveMember.set_external_sender`
26    (member → gateway)         :meth:`DaveMember.key_package`
27    proposals (append/revoke)  :meth:`DaveMember.process_proposals` → op 28
29    announce commit            :meth:`DaveMember.process_commit`
30    welcome                    :meth:`DaveMember.process_welcome`
====  =========================  ===============================================

MLS engine: :mod:`rfc9420` 1.3.0 (pure Python), chosen by the evaluation in
``docs/dave.md``: it joins from libdave's (mlspp) and davey's (OpenMLS) Welcomes,
verifies the external sender's proposals and processes both libraries' commits. Its
defects are worked around, each where it bites: it keeps the proposals of a finished
epoch (cleared after every epoch change, :meth:`DaveMember._entered`), writes the
Welcome's external_pub extension without its length prefix (left out: DAVE has no
external joins), its ``export_secret`` skips RFC 9420 §8.5's context hash (DAVE's keys
come from the exporter secret through :func:`framecrypt.workers.dave.ratchet.base_secret`),
and its UpdatePath (wrong leaf node, wrong filtered direct path) is replaced by
:mod:`.mls_path`'s tree backend, so this member's Remove commits are accepted by libdave
and davey like its Add commits.

Everything the gateway sends is walked by :mod:`.mls_wire` first; anything refused gets
:class:`~framecrypt.keys.errors.MlsError` (with a reason, never key bytes), a count in
:attr:`DaveMember.rejected`, and leaves the group state as it was.
"""

from __future__ import annotations

import copy
import struct
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from rfc9420 import (
    DefaultCryptoProvider,
    GroupConfig,
    MemoryStorageProvider,
    MLSGroup,
    ProtocolMLSGroup,
)
from rfc9420.crypto.ciphersuites import CipherSuiteId
from rfc9420.messages.data_structures import Welcome
from rfc9420.messages.key_packages import KeyPackage
from rfc9420.messages.messages import MLSMessage, MLSPlaintext

from framecrypt.workers.dave import ratchet

from . import dave_codes, mls_path, mls_wire
from .errors import MlsError

EXTERNAL_SENDERS_EXTENSION = 5  # RFC 9420 §12.1.8.1
OP_APPEND, OP_REVOKE = 0, 1


@dataclass(frozen=True)
class CommitWelcome:
    """Opcode 28: this member's commit over the pending proposals (and a Welcome when
    it adds members)."""

    commit: bytes = field(repr=False)
    welcome: bytes | None = field(default=None, repr=False)

    def payload(self) -> bytes:
        """Opcode 28's payload as libdave sends it: the commit, then the raw Welcome."""
        return self.commit + (self.welcome or b"")


@dataclass(frozen=True)
class EpochChanged:
    """The member is in epoch ``epoch`` of the call with ``members`` (user ids)."""

    epoch: int
    members: frozenset[int]
    joined: frozenset[int]
    left: frozenset[int]


def _engine_config() -> GroupConfig:
    return GroupConfig(
        crypto_provider=DefaultCryptoProvider(CipherSuiteId.MLS_128_DHKEMP256_AES128GCM_SHA256_P256),
        storage_provider=MemoryStorageProvider(),
        tree_backend_id=mls_path.BACKEND_ID,
    )


class DaveMember:
    """One user's view of a call's MLS group (DAVE protocol version 1)."""

    def __init__(self, user_id: int, channel_id: int) -> None:
        if not 0 <= user_id < 1 << 64 or not 0 <= channel_id < 1 << 64:
            raise MlsError("user and channel ids are unsigned 64-bit integers")
        self.user_id = user_id
        self.channel_id = channel_id
        self.rejected: Counter[str] = Counter()
        self._signing = ec.generate_private_key(ec.SECP256R1())
        self._kp: mls_wire.KeyPackageKeys | None = None
        self._external: bytes | None = None
        self._group: Any = None  # rfc9420 MLSGroup once in a group
        self._pending_group: Any = None  # a group this member created to commit into
        self._staged: Any = None  # this member's own commit, until announced
        self._staged_commit: bytes | None = None
        self._members: frozenset[int] = frozenset()

    def __repr__(self) -> str:
        return f"DaveMember(user={self.user_id}, epoch={self.epoch}, members={len(self._members)})"

    # ---- state -------------------------------------------------------------------
    @property
    def group_id(self) -> bytes:
        return struct.pack(">Q", self.channel_id)

    @property
    def ready(self) -> bool:
        return self._group is not None

    @property
    def epoch(self) -> int | None:
        return int(self._group.epoch) if self._group is not None else None

    @property
    def members(self) -> frozenset[int]:
        return self._members

    def epoch_authenticator(self) -> bytes:
        auth: bytes = bytes(self._established()._inner.get_epoch_authenticator())
        return auth

    def base_secret(self, user_id: int) -> bytes:
        """Sender ``user_id``'s DAVE base secret this epoch (RFC 9420 §8.5 exporter)."""
        if user_id not in self._members:
            raise MlsError("not a member of this epoch")
        return ratchet.base_secret(bytes(self._established()._inner.get_exporter_secret()), user_id)

    def voice_privacy_code(self) -> str:
        """The call's security code as Discord shows it (30 digits from the epoch
        authenticator)."""
        return dave_codes.displayable_code(self.epoch_authenticator(), 30, 5)

    def pairwise_fingerprint(self, user_id: int) -> bytes:
        """The 64-byte fingerprint this member and ``user_id`` compare (DAVE §verification)."""
        mine = dave_codes.key_fingerprint(mls_wire.public_key_bytes(self._signing), self.user_id)
        theirs = dave_codes.key_fingerprint(self._signature_key_of(user_id), user_id)
        return dave_codes.pairwise_fingerprint(mine, theirs)

    # ---- opcodes -----------------------------------------------------------------
    def key_package(self) -> bytes:
        """Opcode 26: a fresh KeyPackage (any earlier one is forgotten)."""
        self._kp = mls_wire.new_key_package(self.user_id, self._signing)
        return self._kp.key_package

    def set_external_sender(self, payload: bytes) -> None:
        """Opcode 25: the gateway's ExternalSender (signature key, basic credential)."""
        r = mls_wire.Reader(payload)
        try:
            key = r.vec()
            if r.u16() != mls_wire.CREDENTIAL_BASIC:
                raise MlsError("external sender: not a basic credential")
            r.vec()
            if not r.done() or len(key) != 65 or key[0] != 4:
                raise MlsError("external sender: not one uncompressed P-256 key")
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
        except (MlsError, ValueError) as e:
            self.rejected["external_sender"] += 1
            reason = e.reason if isinstance(e, MlsError) else "external sender: invalid key"
            raise MlsError(reason) from None
        self._external = payload

    def process_proposals(
        self, payload: bytes, recognized: Collection[int]
    ) -> CommitWelcome | None:
        """Opcode 27: the gateway's Add/Remove proposals (``u8 op || vector``).

        Adds must carry a key package of a user in ``recognized`` (the gateway's list
        of the call's users). Returns this member's commit and Welcome (opcode 28), or
        None when it leaves the commit to another member."""
        if self._external is None:
            raise self._reject("proposals", "no external sender yet")
        r = mls_wire.Reader(payload)
        try:
            op = r.u8()
            body = r.vec()
            if not r.done():
                raise MlsError("trailing bytes")
        except MlsError as e:
            raise self._reject("proposals", str(e)) from None
        if op == OP_REVOKE:
            self._revoke(body)
            return None
        if op != OP_APPEND:
            raise self._reject("proposals", "unknown operation")
        try:
            proposals = mls_wire.read_proposals(body)
        except MlsError as e:
            raise self._reject("proposals", str(e)) from None
        for p in proposals:
            if p.added is not None and p.added.user_id not in recognized:
                raise self._reject("proposals", "add of an unrecognized user")
        current = self._group or self._pending_group
        # queued on a copy: a batch refused halfway leaves no proposal of it behind
        group = copy.deepcopy(current) if current is not None else self._new_group()
        if any(p.epoch != group.epoch for p in proposals):
            raise self._reject("proposals", "wrong epoch")
        for p in proposals:
            try:
                group.process_proposal(MLSPlaintext.deserialize(p.content), 0, 2)
            except Exception:
                raise self._reject("proposals", "refused by the MLS group") from None
        if self._group is not None:
            self._group = group
        else:
            self._pending_group = group
        return self._commit(group, proposals)

    def process_commit(self, commit: bytes) -> EpochChanged:
        """Opcode 29: the commit the gateway chose for this transition (this member's own
        or another's)."""
        if self._staged is not None and commit == self._staged_commit:
            group = self._group or self._pending_group
            group.apply_staged_commit(self._staged)
            return self._entered(group)
        if self._group is None:
            raise self._reject("commit", "not in a group")
        # rfc9420's staged path is for own commits only and its process_commit mutates
        # as it goes: a refused commit must leave the group as it was, so it is
        # processed on a copy that replaces the group only on success
        trial = copy.deepcopy(self._group)
        try:
            mls_wire.split_commit_welcome(commit)
            msg = MLSMessage.deserialize(commit)
            trial.process_commit(MLSPlaintext.deserialize(msg.content))
        except Exception:
            raise self._reject("commit", "refused by the MLS group") from None
        return self._entered(trial)

    def process_welcome(self, welcome: bytes, recognized: Collection[int]) -> EpochChanged:
        """Opcode 30: join the call's group from a Welcome for this member's key package."""
        if self._kp is None:
            raise self._reject("welcome", "no key package")
        if self._group is not None:
            raise self._reject("welcome", "already in a group")
        kp = self._kp
        # rfc9420 joins whatever suite the Welcome names and tries every entry's secrets:
        # the Welcome must be walkable, of suite 2, and hold secrets for this key package
        try:
            refs = mls_wire.welcome_refs(welcome)
        except MlsError as e:
            raise self._reject("welcome", e.reason) from None
        if mls_wire.key_package_ref(kp.key_package) not in refs:
            raise self._reject("welcome", "not for this member's key package")
        try:
            w = Welcome.deserialize(welcome)
            inner = ProtocolMLSGroup.from_welcome(
                w, mls_wire.private_scalar(kp.init_key), _engine_config().crypto_provider,
                key_package=KeyPackage.deserialize(kp.key_package),
                tree_backend=mls_path.BACKEND_ID,
                encryption_private_key=mls_wire.private_scalar(kp.encryption_key))
        except Exception:
            raise self._reject("welcome", "refused by the MLS group") from None
        group = MLSGroup(_engine_config(), inner)
        members = self._roster(group)
        if not members <= frozenset(recognized) | {self.user_id}:
            raise self._reject("welcome", "group holds unrecognized users")
        if self._external_senders(group) != self._external:
            raise self._reject("welcome", "group's external sender is not the gateway")
        self._pending_group = None
        return self._entered(group)

    # ---- internals ---------------------------------------------------------------
    def _reject(self, where: str, reason: str) -> MlsError:
        self.rejected[where] += 1
        return MlsError(f"{where}: {reason}")

    def _established(self) -> Any:
        if self._group is None:
            raise MlsError("not in a group")
        return self._group

    def _new_group(self) -> Any:
        """libdave's first member: a group of one (epoch 0) to commit the Adds into."""
        if self._kp is None:
            raise self._reject("proposals", "no key package")
        assert self._external is not None
        ext = struct.pack(">H", EXTERNAL_SENDERS_EXTENSION) + mls_wire.vec(
            mls_wire.vec(self._external))
        group = MLSGroup.create(_engine_config(), self.group_id,
                                KeyPackage.deserialize(self._kp.key_package),
                                initial_extensions=ext)  # rfc9420 keeps them unprefixed
        own_leaf = group._inner._ratchet_tree.get_node(0)
        own_leaf.private_key = mls_wire.private_scalar(self._kp.encryption_key)
        return group

    def _commit(self, group: Any, proposals: list[mls_wire.Proposal]) -> CommitWelcome | None:
        # rfc9420 puts an external_pub extension into the Welcome's GroupInfo without its
        # length prefix (and of the old epoch): OpenMLS refuses the GroupInfo as malformed.
        # DAVE has no external joins, so the Welcome goes without it.
        group._inner._external_public_key = None
        try:
            key = mls_wire.private_scalar(self._signing)
            with mls_path.signing(key, self.group_id):
                staged = group.create_commit(key)
        except Exception:
            raise self._reject("commit", "the MLS engine could not commit") from None
        commit = MLSMessage.from_public_message(staged.commit_message.auth_content).serialize()
        welcome = staged.welcomes[0].serialize() if staged.welcomes else None
        self._staged, self._staged_commit = staged, bytes(commit)
        return CommitWelcome(bytes(commit), welcome)

    def _revoke(self, body: bytes) -> None:
        group = self._group or self._pending_group
        r = mls_wire.Reader(body)
        try:
            while not r.done():
                ref = r.vec()
                if group is not None:
                    group.revoke_proposal(ref)
        except Exception:
            raise self._reject("proposals", "revoke of an unknown proposal") from None

    def _entered(self, group: Any) -> EpochChanged:
        # rfc9420 keeps the last epoch's proposals (and a stale own commit) after an
        # epoch change; DAVE's proposals are always for the current epoch
        group._inner._pending_proposals = []
        group._inner._proposal_cache = {}
        self._staged = self._staged_commit = None
        before = self._members
        self._group, self._pending_group = group, None
        self._members = self._roster(group)
        now = self._members
        return EpochChanged(int(group.epoch), now, now - before, before - now)

    @staticmethod
    def _leaves(group: Any) -> list[Any]:
        tree = group._inner._ratchet_tree
        out = []
        for i in range(tree.n_leaves):
            node = tree.get_node(2 * i)
            if node is not None and getattr(node, "leaf_node", None) is not None:
                out.append(node.leaf_node)
        return out

    def _roster(self, group: Any) -> frozenset[int]:
        ids = []
        for leaf in self._leaves(group):
            identity = leaf.credential.identity if leaf.credential is not None else b""
            if len(identity) != 8:
                raise self._reject("group", "a member without a 64-bit user id")
            ids.append(struct.unpack(">Q", identity)[0])
        if len(set(ids)) != len(ids):
            raise self._reject("group", "a user twice in the group")
        return frozenset(ids)

    def _signature_key_of(self, user_id: int) -> bytes:
        identity = struct.pack(">Q", user_id)
        for leaf in self._leaves(self._established()):
            if leaf.credential is not None and leaf.credential.identity == identity:
                return bytes(leaf.signature_key)
        raise MlsError("not a member of this epoch")

    @staticmethod
    def _external_senders(group: Any) -> bytes | None:
        exts = group._inner._group_context.extensions or b""
        r = mls_wire.Reader(bytes(exts))  # rfc9420: Extension entries, no vector prefix
        try:
            while not r.done():
                kind, data = r.u16(), r.vec()
                if kind == EXTERNAL_SENDERS_EXTENSION:
                    inner = mls_wire.Reader(data)
                    one = inner.vec()
                    return one if inner.done() else None
        except MlsError:
            return None
        return None

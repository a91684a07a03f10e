"""The RFC 9420 wire forms a DAVE member reads and writes itself (§2.1.2 variable-size
vectors, §6 MLSMessage/PublicMessage framing, §10 KeyPackage, §7.2 LeafNode).

The MLS group state machine is :mod:`rfc9420`'s (see :mod:`framecrypt.keys.dave_group`);
this module holds what the member checks *before* handing bytes to it (every byte from
the voice gateway is untrusted: a message is walked completely, bounded, or refused
with :class:`~framecrypt.keys.errors.MlsError`), and the KeyPackage builder rfc9420
lacks. Only cipher suite 2 (MLS_128_DHKEMP256_AES128GCM_SHA256_P256), basic
credentials and what DAVE sends are understood.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import MlsError

VERSION_MLS10 = 1
SUITE_P256 = 2
WIRE_PUBLIC = 1
WIRE_WELCOME = 3
SENDER_MEMBER = 1
SENDER_EXTERNAL = 2
CONTENT_PROPOSAL = 2
CONTENT_COMMIT = 3
PROPOSAL_ADD = 1
PROPOSAL_REMOVE = 3
CREDENTIAL_BASIC = 1
LEAF_SOURCE_KEY_PACKAGE = 1
# what libdave and davey advertise: versions [1], suites [2], no extensions or
# proposals beyond the defaults, credentials [basic]
DAVE_CAPABILITIES = bytes.fromhex("0200010200020000020001")
MAX_MESSAGE = 1 << 20  # no DAVE handshake message comes near a MiB


def varint(n: int) -> bytes:
    """RFC 9420 §2.1.2 variable-length integer (1, 2 or 4 bytes, minimal)."""
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return struct.pack(">H", 0x4000 | n)
    if n < 1 << 30:
        return struct.pack(">I", 0x80000000 | n)
    raise MlsError("vector too long")


def vec(data: bytes) -> bytes:
    return varint(len(data)) + data


class Reader:
    """A bounded cursor over untrusted bytes; every read past the end is an MlsError."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        if len(data) > MAX_MESSAGE:
            raise MlsError("message too large")
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MlsError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        v: int = struct.unpack(">H", self.take(2))[0]
        return v

    def u32(self) -> int:
        v: int = struct.unpack(">I", self.take(4))[0]
        return v

    def u64(self) -> int:
        v: int = struct.unpack(">Q", self.take(8))[0]
        return v

    def varint(self) -> int:
        first = self.u8()
        prefix = first >> 6
        if prefix == 3:
            raise MlsError("invalid varint prefix")
        n = first & 0x3F
        for _ in range((1 << prefix) - 1):
            n = (n << 8) | self.u8()
        if prefix and n < (1 << (8 * (1 << (prefix - 1)) - 2)):
            raise MlsError("non-minimal varint")
        return n

    def vec(self) -> bytes:
        return self.take(self.varint())

    def done(self) -> bool:
        return self.pos == len(self.data)


@dataclass(frozen=True)
class KeyPackageInfo:
    """What a member needs of a KeyPackage: who it is and which keys it carries."""

    user_id: int
    signature_key: bytes
    encryption_key: bytes
    end: int = field(repr=False)


def read_key_package(r: Reader) -> KeyPackageInfo:
    """Walk one KeyPackage (RFC 9420 §10) with a DAVE basic credential."""
    if r.u16() != VERSION_MLS10 or r.u16() != SUITE_P256:
        raise MlsError("key package: not MLS 1.0 with cipher suite 2")
    r.vec()  # init_key
    enc, sig = r.vec(), r.vec()
    if r.u16() != CREDENTIAL_BASIC:
        raise MlsError("key package: not a basic credential")
    identity = r.vec()
    if len(identity) != 8:
        raise MlsError("key package: identity is not a 64-bit user id")
    for _ in range(5):  # capabilities: versions, suites, extensions, proposals, credentials
        r.vec()
    if r.u8() != LEAF_SOURCE_KEY_PACKAGE:
        raise MlsError("key package: leaf node source is not key_package")
    r.take(16)  # lifetime
    r.vec()  # leaf extensions
    r.vec()  # leaf signature
    r.vec()  # key package extensions
    r.vec()  # key package signature
    return KeyPackageInfo(struct.unpack(">Q", identity)[0], sig, enc, r.pos)


@dataclass(frozen=True)
class Proposal:
    """An external sender's Add or Remove, as the gateway sends it (opcode 27)."""

    raw: bytes = field(repr=False)  # the whole MLSMessage
    content: bytes = field(repr=False)  # the PublicMessage (what rfc9420 parses)
    epoch: int
    kind: int  # PROPOSAL_ADD or PROPOSAL_REMOVE
    added: KeyPackageInfo | None = None
    removed_leaf: int | None = None


def read_public_header(r: Reader) -> tuple[int, int, int]:
    """MLSMessage + PublicMessage header up to the content: (epoch, sender type,
    content type); the group id is checked by the caller's group state."""
    if r.u16() != VERSION_MLS10:
        raise MlsError("not MLS 1.0")
    if r.u16() != WIRE_PUBLIC:
        raise MlsError("not a PublicMessage")
    r.vec()  # group id
    epoch = r.u64()
    sender_type = r.u8()
    if sender_type not in (SENDER_MEMBER, SENDER_EXTERNAL):
        raise MlsError("unexpected sender type")
    r.u32()
    r.vec()  # authenticated data
    return epoch, sender_type, r.u8()


def read_proposal(r: Reader) -> Proposal:
    """One external Add/Remove proposal MLSMessage, walked to its end."""
    start = r.pos
    epoch, sender_type, content_type = read_public_header(r)
    if sender_type != SENDER_EXTERNAL or content_type != CONTENT_PROPOSAL:
        raise MlsError("not an external proposal")
    kind = r.u16()
    added = removed = None
    if kind == PROPOSAL_ADD:
        added = read_key_package(r)
    elif kind == PROPOSAL_REMOVE:
        removed = r.u32()
    else:
        raise MlsError("external proposal is neither Add nor Remove")
    r.vec()  # signature (no membership tag: external sender)
    raw = r.data[start : r.pos]
    return Proposal(raw, raw[4:], epoch, kind, added, removed)


def read_proposals(blob: bytes) -> list[Proposal]:
    """The concatenated MLSMessages of an opcode-27 append."""
    r = Reader(blob)
    out = []
    while not r.done():
        out.append(read_proposal(r))
    return out


def split_commit_welcome(blob: bytes) -> tuple[bytes, bytes]:
    """Opcode 28 as libdave writes it: a commit MLSMessage, then an optional Welcome.

    Walks the commit (RFC 9420 §12.4: proposals by value or reference, optional
    UpdatePath) to find where the Welcome starts."""
    r = Reader(blob)
    _, sender_type, content_type = read_public_header(r)
    if sender_type != SENDER_MEMBER or content_type != CONTENT_COMMIT:
        raise MlsError("not a member's commit")
    props = Reader(r.vec())
    while not props.done():
        if props.u8() == 1:  # by value
            kind = props.u16()
            if kind == PROPOSAL_ADD:
                read_key_package(props)
            elif kind == PROPOSAL_REMOVE:
                props.u32()
            else:
                raise MlsError("commit carries an unsupported proposal by value")
        else:
            props.vec()  # reference
    if r.u8():  # optional<UpdatePath>
        _walk_leaf_node(r)
        r.vec()  # UpdatePathNode<V>
    r.vec()  # signature
    r.vec()  # confirmation tag
    r.vec()  # membership tag
    return blob[: r.pos], blob[r.pos :]


def key_package_ref(key_package: bytes) -> bytes:
    """RFC 9420 §5.2 RefHash("MLS 1.0 KeyPackage Reference", KeyPackage), SHA-256."""
    return hashlib.sha256(vec(b"MLS 1.0 KeyPackage Reference") + vec(key_package)).digest()


def welcome_refs(blob: bytes) -> list[bytes]:
    """The KeyPackageRefs a Welcome (RFC 9420 §12.4.3.1, DAVE sends it unwrapped) holds
    group secrets for, after walking it whole."""
    r = Reader(blob)
    if r.u16() != SUITE_P256:
        raise MlsError("welcome: not cipher suite 2")
    entries = Reader(r.vec())
    refs = []
    while not entries.done():
        refs.append(entries.vec())
        entries.vec(), entries.vec()  # HPKECiphertext: kem_output, ciphertext
    r.vec()  # encrypted_group_info
    if not r.done():
        raise MlsError("welcome: trailing bytes")
    return refs


def _walk_leaf_node(r: Reader) -> None:
    r.vec(), r.vec()
    r.u16(), r.vec()
    for _ in range(5):
        r.vec()
    source = r.u8()
    if source == LEAF_SOURCE_KEY_PACKAGE:
        r.take(16)
    elif source == 3:
        r.vec()  # parent hash
    r.vec(), r.vec()


def public_key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def private_scalar(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_numbers().private_value.to_bytes(32, "big")


def sign_with_label(key: ec.EllipticCurvePrivateKey, label: bytes, content: bytes) -> bytes:
    """RFC 9420 §5.1.2 SignWithLabel, ECDSA P-256 SHA-256 (DER)."""
    return key.sign(vec(b"MLS 1.0 " + label) + vec(content), ec.ECDSA(hashes.SHA256()))


@dataclass(frozen=True)
class KeyPackageKeys:
    """A fresh KeyPackage and its private keys (never printed)."""

    key_package: bytes = field(repr=False)
    signature_key: ec.EllipticCurvePrivateKey = field(repr=False)
    encryption_key: ec.EllipticCurvePrivateKey = field(repr=False)
    init_key: ec.EllipticCurvePrivateKey = field(repr=False)


def new_key_package(user_id: int, signature_key: ec.EllipticCurvePrivateKey) -> KeyPackageKeys:
    """A DAVE KeyPackage (RFC 9420 §10): basic credential = the user id as a big-endian
    u64, DAVE's capabilities, lifetime 0..2^64-1 (as libdave and davey send)."""
    enc = ec.generate_private_key(ec.SECP256R1())
    init = ec.generate_private_key(ec.SECP256R1())
    leaf_tbs = (vec(public_key_bytes(enc)) + vec(public_key_bytes(signature_key))
                + struct.pack(">H", CREDENTIAL_BASIC) + vec(struct.pack(">Q", user_id))
                + DAVE_CAPABILITIES + bytes([LEAF_SOURCE_KEY_PACKAGE])
                + struct.pack(">QQ", 0, (1 << 64) - 1) + vec(b""))
    leaf = leaf_tbs + vec(sign_with_label(signature_key, b"LeafNodeTBS", leaf_tbs))
    kp_tbs = (struct.pack(">HH", VERSION_MLS10, SUITE_P256) + vec(public_key_bytes(init))
              + leaf + vec(b""))
    kp = kp_tbs + vec(sign_with_label(signature_key, b"KeyPackageTBS", kp_tbs))
    return KeyPackageKeys(kp, signature_key, enc, init)

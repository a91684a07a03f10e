"""SFrame (RFC 9605): the pure core a crypto worker runs.

Modules follow the RFC: :mod:`.header` (§4.3), :mod:`.suites` (§4.5, IANA §8.1),
:mod:`.keyschedule` (§4.4.2), :mod:`.aead` (§4.5, §4.5.1), :mod:`.context`
(§4.4.3, §4.4.4), :mod:`.ratchet` (§5.1), :mod:`.mls` (§5.2) and :mod:`.replay`
(receiver replay window, RFC 3711 §3.3.2 style). No asyncio, zmq, clocks or
randomness: everything is a function of its arguments.
"""

from __future__ import annotations

from .aead import Aead, CtrHmacAead, GcmAead, make_aead
from .context import KeySource, ReceiverContext, ReceiveSlot, SenderContext, SFrameKey
from .header import (
    MAX_HEADER_LENGTH,
    Header,
    decode_header,
    encode_header,
    encode_header_into,
    header_length,
    parse_header,
)
from .keyschedule import (
    KeyAndSalt,
    LruCache,
    derive_key_salt,
    hkdf,
    hkdf_expand,
    hkdf_extract,
    key_label,
    salt_label,
    sframe_secret,
)
from .mls import MlsKeySource, MlsKid, MlsKidLayout, exporter_length, sender_bits
from .ratchet import RatchetingSender, RatchetKeySource, RatchetLayout, next_base_key
from .replay import ReplayWindow
from .suites import SUITES, AeadKind, CipherSuite, SuiteId, get_suite

__all__ = [
    "MAX_HEADER_LENGTH",
    "SUITES",
    "Aead",
    "AeadKind",
    "CipherSuite",
    "CtrHmacAead",
    "GcmAead",
    "Header",
    "KeyAndSalt",
    "KeySource",
    "LruCache",
    "MlsKeySource",
    "MlsKid",
    "MlsKidLayout",
    "RatchetKeySource",
    "RatchetLayout",
    "RatchetingSender",
    "ReceiveSlot",
    "ReceiverContext",
    "ReplayWindow",
    "SFrameKey",
    "SenderContext",
    "SuiteId",
    "decode_header",
    "derive_key_salt",
    "encode_header",
    "encode_header_into",
    "exporter_length",
    "get_suite",
    "header_length",
    "hkdf",
    "hkdf_expand",
    "hkdf_extract",
    "key_label",
    "make_aead",
    "next_base_key",
    "parse_header",
    "salt_label",
    "sender_bits",
    "sframe_secret",
]

"""Server-injected frames (SIF), LiveKit only.

The SFU may inject unencrypted blank frames that end with a per-room trailer
(``JoinResponse.sif_trailer``). A receiver that finds the trailer strips it and lets
the rest through *only* if its SHA-256 is one of the known blanks; anything else is
dropped. The default allowlist is livekit-client's (``sifPayload.ts``): a VP8 8×8
key frame, a bare H.264 SPS, PPS and IDR of a 2×2 key frame, an 80-byte Opus silence
frame.
"""

from __future__ import annotations

import hashlib
from typing import Final

DEFAULT_BLANK_SHA256: Final = frozenset(
    bytes.fromhex(h)
    for h in (
        "ef0161653d8b2b23aad46624b420af1d03ce48950e9fc85718028f91b50f9219",  # VP8 8x8 key
        "f0a0e09647d891d6d50aa898bce7108090375d0d55e50a2bb21147afee558e44",  # H.264 SPS
        "61d9665eed71b6d424ae9539330a3bdd5cb386d4d781c808219a6e36750493a7",  # H.264 PPS
        "faffc26b68a2fc09096fa20f3351e706398b6f838a7500c8063472c2e476e90d",  # H.264 IDR
        "aad8d31fc56b2802ca500e58c2fb9d0b29ad71bb7cb52cd6530251eade188988",  # Opus silence
    )
)


def is_server_injected(data: bytes, trailer: bytes | None) -> bool:
    return trailer is not None and len(trailer) > 0 and data.endswith(trailer)


def strip(data: bytes, trailer: bytes) -> bytes:
    return data[: len(data) - len(trailer)]


def is_allowed_blank(payload: bytes, allowlist: frozenset[bytes] = DEFAULT_BLANK_SHA256) -> bool:
    return hashlib.sha256(payload).digest() in allowlist

"""The LiveKit / Jitsi (JFrame) frame format — pure core.

See :mod:`framecrypt.livekit` for the public functions.
"""

from .codecs import CODECS, clear_prefix
from .cryptor import CryptorOptions, ParticipantCryptor
from .events import (
    DecryptionFailed,
    Event,
    KeyMarkedInvalid,
    KeyMissing,
    KeyRatcheted,
    SifDropped,
)
from .frame import (
    IV_LENGTH,
    OVERHEAD,
    Sealed,
    counter_iv,
    jitsi_iv,
    livekit_iv,
    open_frame,
    parse,
    seal,
)
from .kdf import JITSI_KEY_SALT, JITSI_RATCHET_SALT, LIVEKIT_SALT, Kdf
from .keyring import KeyRing, KeySet
from .lkts import FrameMetadata

__all__ = [
    "CODECS",
    "IV_LENGTH",
    "JITSI_KEY_SALT",
    "JITSI_RATCHET_SALT",
    "LIVEKIT_SALT",
    "OVERHEAD",
    "CryptorOptions",
    "DecryptionFailed",
    "Event",
    "FrameMetadata",
    "Kdf",
    "KeyMarkedInvalid",
    "KeyMissing",
    "KeyRatcheted",
    "KeyRing",
    "KeySet",
    "ParticipantCryptor",
    "Sealed",
    "SifDropped",
    "clear_prefix",
    "counter_iv",
    "jitsi_iv",
    "livekit_iv",
    "open_frame",
    "parse",
    "seal",
]

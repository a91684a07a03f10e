"""End-to-end encryption of aiortc media with framecrypt (LiveKit frame format by
default, byte-compatible with livekit-client's E2EE worker).

```python
pool = Pool(workers=2)                       # started on the peer connection's loop
await pool.set_key("me", key)                # my sender key
await pool.set_key("them", key)              # the key their frames are sealed with
t = pc.addTransceiver(track, "sendrecv")
prefer_codecs(t)                             # VP8 / H.264 / Opus only
attach_sender(t.sender, pool, "me")          # seal before packetization
attach_receiver(t.receiver, pool, "them")    # open before decoding; failures -> PLI
```

Hooks are per sender / per receiver (no module is patched); every access to aiortc
internals is in :mod:`framecrypt.webrtc._aiortc_internals`, which checks at import
that the installed aiortc is a supported one (:data:`SUPPORTED_AIORTC`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _aiortc_internals as _ai
from .transform import (
    ReceiverStats,
    ReceiverTransform,
    SenderStats,
    SenderTransform,
    frame_is_keyframe,
)

if TYPE_CHECKING:
    from aiortc import (
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpReceiver,
        RTCRtpSender,
        RTCRtpTransceiver,
    )

    from framecrypt.broker.pool import Pool

_ai.check()

SUPPORTED_AIORTC = _ai.SUPPORTED_TEXT
UnsupportedAiortc = _ai.UnsupportedAiortc
CODECS = {"video": ("vp8", "h264"), "audio": ("opus",)}

__all__ = [
    "CODECS",
    "SUPPORTED_AIORTC",
    "ReceiverStats",
    "ReceiverTransform",
    "SenderStats",
    "SenderTransform",
    "UnsupportedAiortc",
    "attach_receiver",
    "attach_sender",
    "frame_is_keyframe",
    "local_configuration",
    "loopback_only",
    "prefer_codecs",
]


def attach_sender(sender: RTCRtpSender, pool: Pool, participant: str,
                  **options: Any) -> SenderTransform:
    """Seal everything ``sender`` sends with ``participant``'s current key."""
    return SenderTransform(pool, participant, **options).attach(sender)


def attach_receiver(receiver: RTCRtpReceiver, pool: Pool, participant: str,
                    **options: Any) -> ReceiverTransform:
    """Open everything ``receiver`` gets with ``participant``'s keys; a frame that does
    not authenticate is dropped and a keyframe is requested (PLI)."""
    return ReceiverTransform(pool, participant, **options).attach(receiver)


def prefer_codecs(transceiver: RTCRtpTransceiver, *codecs: str) -> None:
    """Negotiate only codecs framecrypt can seal (``"vp8"``, ``"h264"``, ``"opus"``), in
    the given order (default: VP8 then H.264 for video, Opus for audio), plus RTX."""
    from aiortc import RTCRtpSender

    kind = transceiver.kind
    wanted = codecs or CODECS[kind]
    unknown = [c for c in wanted if c not in CODECS[kind]]
    if unknown:
        raise ValueError(f"cannot end-to-end encrypt {kind} codec(s) {unknown}")
    caps = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for name in wanted for c in caps
              if c.mimeType.lower() == f"{kind}/{name}"]
    chosen += [c for c in caps if c.mimeType.lower() == f"{kind}/rtx"]
    transceiver.setCodecPreferences(chosen)


def local_configuration() -> RTCConfiguration:
    """An ``RTCConfiguration`` for one-host setups: no ICE servers (aiortc's default adds
    Google's STUN server) and max-bundle (with aiortc 1.16's default balanced policy, a
    second transceiver of one kind ends up on a discarded transport)."""
    from aiortc import RTCBundlePolicy, RTCConfiguration

    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def loopback_only(pc: RTCPeerConnection) -> None:
    """Offer only 127.0.0.1 ICE candidates on ``pc`` (tests, demos, one-host setups).
    Call after adding transceivers and before ``setLocalDescription``."""
    _ai.loopback_only(pc)

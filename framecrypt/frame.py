"""The unit of work: one encoded media frame."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    """An encoded frame (after the encoder, before RTP packetization).

    ``data`` is the plaintext for encryption and the sealed frame for decryption;
    ``codec`` one of "vp8", "vp9", "h264", "h265", "av1", "opus"; ``ssrc`` and
    ``timestamp`` (RTP) go into the IV of the LiveKit/Jitsi formats.
    """

    data: bytes
    codec: str
    keyframe: bool = False
    ssrc: int = 0
    timestamp: int = 0

    def __repr__(self) -> str:
        kind = "key" if self.keyframe else "delta"
        return (f"Frame({self.codec} {kind}, {len(self.data)} B, ssrc={self.ssrc}, "
                f"ts={self.timestamp})")

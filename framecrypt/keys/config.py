"""The knobs of a :class:`~framecrypt.keys.policy.Member`'s key policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .ping import PingConfig
from .sas import SasStyle

Role = Literal["member", "visitor"]
KeyFormat = Literal["jitsi", "livekit"]


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Knobs of the key policy (defaults: lib-jitsi-meet's 5 s debounce and ack wait)."""

    ratchet_on_join: bool = True
    rotate_on_leave: bool = True
    join_debounce_s: float = 5.0
    leave_debounce_s: float = 5.0
    max_delay_s: float = 15.0
    ack_timeout_s: float = 5.0
    hold_key_for_joiners: bool = True
    keyring_size: int = 16
    format: KeyFormat = "jitsi"
    strict: bool = True
    sas_style: SasStyle = "framecrypt"
    ping: PingConfig | None = None
    rotate_visitor_key_on_visitor_leave: bool = True
    visitor_suffix: str = "#visitors"
    key_bytes: int = 32

    def __post_init__(self) -> None:
        for name in ("join_debounce_s", "leave_debounce_s", "max_delay_s", "ack_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 1 <= self.keyring_size <= 256:
            raise ValueError("keyring_size must be 1..256")
        if self.format not in ("jitsi", "livekit"):
            raise ValueError("format must be 'jitsi' or 'livekit'")
        if not 16 <= self.key_bytes <= 64:
            raise ValueError("key_bytes must be 16..64")


__all__ = ["KeyFormat", "PolicyConfig", "Role"]

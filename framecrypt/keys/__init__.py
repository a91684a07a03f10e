"""Key exchange and verification for framecrypt: Jitsi-style Olm key distribution,
automatic rotation, visitors, SAS verification, E2EE ping and encrypted data messages.

* :mod:`~framecrypt.keys.envelope` — the wire form (Jitsi's ``{type: "olm", olm: {type,
  data}}`` JSON) and the message dataclasses;
* :mod:`~framecrypt.keys.olm` — :class:`OlmIdentity` and the pairwise :class:`OlmChannel`
  (vodozemac);
* :mod:`~framecrypt.keys.policy` — :class:`Member`, the sans-I/O participant: join/leave
  key policy, visitors, SAS, ping; returns actions and a deadline;
* :mod:`~framecrypt.keys.driver` — :class:`PoolDriver` applies those actions to a
  :class:`framecrypt.Pool` with asyncio; :class:`LoopbackBus`, :func:`demo_report`,
  :func:`run_demo`;
* :mod:`~framecrypt.keys.sas`, :mod:`~framecrypt.keys.ping`,
  :mod:`~framecrypt.keys.datamsg` — the pieces.

Importing this package loads vodozemac and cryptography, not asyncio (the driver is
imported on first use of :class:`PoolDriver`, :class:`LoopbackBus`, :func:`run_demo`,
:func:`demo_report`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .envelope import from_json, to_json
from .errors import (
    KeyExchangeError,
    MalformedMessage,
    OlmError,
    ReplayedMessage,
    UnexpectedMessage,
    UnknownSession,
    VerificationFailed,
)
from .olm import MediaKey, OlmChannel, OlmIdentity
from .ping import PingConfig
from .policy import Member, PolicyConfig
from .sas import EMOJI, SasResult, SasVerification

if TYPE_CHECKING:
    from .driver import LoopbackBus, PoolDriver, demo_report, run_demo

__all__ = [
    "EMOJI",
    "KeyExchangeError",
    "LoopbackBus",
    "MalformedMessage",
    "MediaKey",
    "Member",
    "OlmChannel",
    "OlmError",
    "OlmIdentity",
    "PingConfig",
    "PolicyConfig",
    "PoolDriver",
    "ReplayedMessage",
    "SasResult",
    "SasVerification",
    "UnexpectedMessage",
    "UnknownSession",
    "VerificationFailed",
    "demo_report",
    "from_json",
    "run_demo",
    "to_json",
]


def __getattr__(name: str) -> Any:
    if name in ("LoopbackBus", "PoolDriver", "demo_report", "run_demo"):
        from . import driver

        return getattr(driver, name)
    raise AttributeError(f"module 'framecrypt.keys' has no attribute {name!r}")

"""framecrypt: end-to-end encryption of WebRTC encoded frames.

The pure crypto core (``framecrypt.sframe``, ``framecrypt.livekit``,
``framecrypt.jitsi``) imports no asyncio, zmq or clocks and can be used inline.
``framecrypt.Pool`` (the worker pool) and ``framecrypt.Frame`` are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from framecrypt.broker.pool import Pool, PoolEvent
    from framecrypt.frame import Frame

__all__ = ["Frame", "Pool", "PoolEvent", "__version__", "native_info"]


def native_info() -> dict[str, Any]:
    """Which hot loop runs and why: ``{"path": "native" | "python", "why": …}`` plus,
    on the native path, the AES-GCM ``backend`` (``ipsec-mb`` or ``evp``) and its
    version (see :mod:`framecrypt.workers.native`; ``FRAMECRYPT_NATIVE=0`` forces the
    pure-Python core)."""
    from framecrypt.workers.native import info

    return info()


def __getattr__(name: str) -> Any:
    if name in ("Pool", "PoolEvent"):
        from framecrypt.broker import pool

        return getattr(pool, name)
    if name == "Frame":
        from framecrypt.frame import Frame

        return Frame
    raise AttributeError(f"module 'framecrypt' has no attribute {name!r}")

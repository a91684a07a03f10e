"""framecrypt: end-to-end encryption of WebRTC encoded frames.

The pure crypto core (``framecrypt.sframe``, ``framecrypt.livekit``,
``framecrypt.jitsi``) imports no asyncio, zmq or clocks and can be used inline.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

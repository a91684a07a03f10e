"""``framecrypt record``: a trusted member that joins an end-to-end encrypted room,
subscribes to every publisher, opens the frames in a :class:`framecrypt.Pool` and
writes one file per participant (WebM for VP8/Opus, Matroska for H.264; remuxed with
PyAV, never re-encoded) plus a versioned ``manifest.json``.

```python
async with Pool(workers=2, livekit__failure_tolerance=-1) as pool:
    await pool.set_key("alice", "room passphrase")          # per publisher
    recorder = Recorder(pool, RelaySource("127.0.0.1:7000", ["alice"]), "recording")
    manifest = await recorder.run(duration=10)
```

Rooms plug in as a :class:`RoomSource` (the demo's relay: :class:`RelaySource`).
See ``docs/record.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import KeyFileError, RecordError, RecordingFailed, RoomUnreachable
from .manifest import SCHEMA, VERSION
from .source import EncodedFrame, FrameSink, RoomSource

if TYPE_CHECKING:
    from .keyfile import KeyFile
    from .relay_source import RelaySource
    from .session import Recorder

# aiortc and PyAV load on first use (``framecrypt --help`` stays fast)
_LAZY = {"KeyFile": ".keyfile", "RelaySource": ".relay_source", "Recorder": ".session"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCHEMA",
    "VERSION",
    "EncodedFrame",
    "FrameSink",
    "KeyFile",
    "KeyFileError",
    "RecordError",
    "Recorder",
    "RecordingFailed",
    "RelaySource",
    "RoomSource",
    "RoomUnreachable",
]

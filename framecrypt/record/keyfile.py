"""Keys for ``framecrypt record`` from a JSON file, re-read when it changes (so keys
can rotate while recording)::

    {"default": [{"index": 0, "passphrase": "room passphrase"}],
     "participants": {"alice": [{"index": 0, "passphrase": "..."},
                                {"index": 1, "key_hex": "00112233..."}]}}

``passphrase`` is a livekit-client passphrase (PBKDF2), ``key_hex`` raw key bytes
(HKDF), as :meth:`framecrypt.Pool.set_key` takes them. A participant without an entry
gets ``default``. Only entries that changed are set again (setting a key resets its
ratchet). Key material is held only as long as needed to set it and never printed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import KeyFileError

if TYPE_CHECKING:
    from framecrypt.broker.pool import Pool


@dataclass(frozen=True)
class KeyEntry:
    index: int
    material: bytes | str = field(repr=False)

    def fingerprint(self) -> bytes:
        m = self.material if isinstance(self.material, bytes) else self.material.encode()
        return hashlib.sha256(bytes([self.index, isinstance(self.material, bytes)]) + m
                              ).digest()


def _entries(value: Any, where: str) -> list[KeyEntry]:
    if not isinstance(value, list):
        raise KeyFileError(f"{where} must be a list")
    out = []
    for i, e in enumerate(value):
        if not isinstance(e, dict):
            raise KeyFileError(f"{where}[{i}] must be an object")
        index = e.get("index", 0)
        if type(index) is not int or not 0 <= index < 256:
            raise KeyFileError(f"{where}[{i}].index must be an int in 0..255")
        if isinstance(e.get("passphrase"), str) and e["passphrase"]:
            out.append(KeyEntry(index, e["passphrase"]))
        elif isinstance(e.get("key_hex"), str):
            try:
                raw = bytes.fromhex(e["key_hex"])
            except ValueError:
                raise KeyFileError(f"{where}[{i}].key_hex is not hex") from None
            if not raw:
                raise KeyFileError(f"{where}[{i}].key_hex is empty")
            out.append(KeyEntry(index, raw))
        else:
            raise KeyFileError(f"{where}[{i}] needs a passphrase or key_hex")
    return out


def parse(text: str) -> tuple[list[KeyEntry], dict[str, list[KeyEntry]]]:
    """``(default, per participant)`` from the file's text."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise KeyFileError("not valid JSON") from None
    if not isinstance(doc, dict):
        raise KeyFileError("the top level must be an object")
    default = _entries(doc.get("default", []), "default")
    parts = doc.get("participants", {})
    if not isinstance(parts, dict):
        raise KeyFileError("participants must be an object")
    return default, {str(k): _entries(v, f"participants.{k}") for k, v in parts.items()}


class KeyFile:
    """Sets the keys of ``room``'s participants in ``pool`` from ``path`` and keeps
    them in step with the file (:meth:`watch`)."""

    def __init__(self, path: str | Path, pool: Pool, room: Iterable[str],
                 key_name: Callable[[str], str] | None = None) -> None:
        self.path = Path(path)
        self.pool = pool
        self.room = list(room)
        self.key_name = key_name or (lambda participant: participant)
        self.loads = 0
        self.errors = 0
        self._applied: dict[tuple[str, int], bytes] = {}
        self._mtime: int | None = None

    def __repr__(self) -> str:
        return f"KeyFile({str(self.path)!r}, loads={self.loads})"

    async def load(self) -> int:
        """Read the file and set what changed; returns the number of keys set."""
        default, parts = parse(self.path.read_text())
        n = 0
        for name in self.room:
            for e in parts.get(name, default):
                fp = e.fingerprint()
                if self._applied.get((name, e.index)) == fp:
                    continue
                await self.pool.set_key(self.key_name(name), e.material, e.index)
                self._applied[(name, e.index)] = fp
                n += 1
        self.loads += 1
        return n

    async def watch(self, interval_s: float = 0.25) -> None:
        """Reload whenever the file's modification time changes (until cancelled). A
        file that does not parse is counted and ignored (the keys stay)."""
        while True:
            try:
                mtime = self.path.stat().st_mtime_ns
            except OSError:
                mtime = None
            if mtime is not None and mtime != self._mtime:
                self._mtime = mtime
                try:
                    await self.load()
                except (KeyFileError, OSError):
                    self.errors += 1
            await asyncio.sleep(interval_s)

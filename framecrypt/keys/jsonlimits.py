"""Bounded parsing of JSON that comes from peers (envelopes, Olm plaintexts).

:func:`json.loads` recurses once per nesting level, so ``"[" * 30000`` (60 KB, under
any size cap) raises :class:`RecursionError`, which is no ``ValueError`` and escapes a
parser that only expects malformed text. :func:`loads` refuses such input before
``json.loads`` sees it, with a linear pre-scan of the bracket depth that skips string
literals (escapes included), so ``"[[[["`` inside a string value is data, not nesting.

Limits: :data:`MAX_DEPTH` = 32 nesting levels. The deepest legitimate peer JSON is an
envelope's ``olm.data.ciphertext`` / ``olm.data.mac`` object: depth 4 (key-info
plaintexts are depth 1), so 32 leaves a wide margin for extensions while staying far
below the interpreter's recursion limit (1000), with room for a deep caller stack.
:data:`MAX_CHARS` = 64 KiB, the envelope cap (an Olm plaintext arrives inside an
envelope field of at most 16 KiB, so it is smaller still).

Also refused, as malformed: ``NaN`` / ``Infinity`` (not JSON, RFC 8259) and strings
with unpaired UTF-16 surrogates (``"\\ud800"``, not Unicode, I-JSON RFC 7493 §2.1): such
a field raises :class:`UnicodeEncodeError` wherever it is later encoded (e.g. the replay
fingerprint of a ciphertext body in :meth:`OlmChannel.open`).

Every failure is :class:`MalformedMessage` naming the kind of failure, never the text.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import MalformedMessage

MAX_DEPTH = 32
MAX_CHARS = 64 * 1024

# A string literal, or the rest of an unterminated one (to the end of the text: the
# optional closing quote keeps the scan linear, no backtracking on a missing quote).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def depth_ok(text: str, max_depth: int = MAX_DEPTH) -> bool:
    """False when ``text`` opens more than ``max_depth`` arrays/objects at once outside
    string literals. Linear time.

    Sound for :func:`json.loads`: up to its first syntax error (an unterminated string,
    a bad escape, a closer with nothing open, …) it sees the same strings and brackets
    as this scan, and it stops at that error, so it never nests deeper than counted."""
    depth = 0
    for c in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if c == "[" or c == "{":
            depth += 1
            if depth > max_depth:
                return False
        else:
            depth -= 1
    return True


def loads(text: str | bytes, *, what: str = "message", max_chars: int = MAX_CHARS,
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse peer JSON (``str``, or ``bytes`` in an encoding :func:`json.loads` accepts)
    of at most ``max_chars`` characters (bytes) and ``max_depth`` nesting levels.

    Raises :class:`MalformedMessage` (reason starting with ``what``) and nothing else
    for any input."""
    if len(text) > max_chars:
        raise MalformedMessage(f"{what} too large")
    if isinstance(text, bytes):
        try:
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        except UnicodeDecodeError:
            raise MalformedMessage(f"{what} is not JSON") from None
    if not depth_ok(text, max_depth):
        raise MalformedMessage(f"{what} is nested too deeply")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # RecursionError: unreachable after depth_ok
        raise MalformedMessage(f"{what} is not JSON") from None
    try:
        # unpaired surrogates (raw, or \u-escaped) do not encode: refuse them here
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedMessage(f"{what} has an unpaired surrogate") from None
    return obj


__all__ = ["MAX_CHARS", "MAX_DEPTH", "depth_ok", "loads"]

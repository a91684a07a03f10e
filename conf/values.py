"""How one setting's value is parsed, checked and described: sizes ("32MiB"),
numbers in their ranges, hosts, hex strings, the wording of what is allowed, and
which keys are sensitive (their values are never shown)."""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from .errors import ConfigError
from .settings import FieldSpec

SENSITIVE_WORDS = ("key", "secret", "passphrase", "material")
"""A key whose name contains one of these never has its value shown."""


# --- sizes -----------------------------------------------------------------------------

_SIZE_RE = re.compile(r"(\d+(?:_\d+)*(?:\.\d+)?)\s*([A-Za-z]*)")
_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_size(text: str) -> int:
    """Bytes in a size string: ``"32MiB"``, ``"100KB"``, ``"1.5 GiB"``, ``"4096"``.

    B/KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of 1000 (units are
    case-insensitive); the result must be a whole number. Raises ``ValueError`` (whose
    message does not repeat the text).
    """
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError("not a size: a number with an optional unit B, KB, MB, GB, TB, "
                         "KiB, MiB, GiB or TiB")
    n = Fraction(m.group(1).replace("_", "")) * _UNITS[m.group(2).lower()]
    if n.denominator != 1:
        raise ValueError("not a whole number of bytes")
    return int(n)


# --- checking one value ------------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HOST_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})*")
_BOOLS = {"true": True, "false": False, "1": True, "0": False,
          "yes": True, "no": False, "on": True, "off": False}


def is_sensitive(name: str, spec: FieldSpec | None = None) -> bool:
    """Whether the value of key ``name`` must never be shown."""
    return (spec is not None and spec.sensitive) or any(w in name.lower()
                                                        for w in SENSITIVE_WORDS)


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, datetime.date | datetime.time):
        return "a date/time"
    return f"a {type(value).__name__}"


def _num(x: float | int) -> str:
    return repr(x)


def _range(lo: float | int | None, hi: float | int | None, lo_open: bool) -> str:
    if lo is not None and hi is not None and not lo_open:
        return f"{_num(lo)}..{_num(hi)}"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {_num(lo)}")
    if hi is not None:
        parts.append(f"<= {_num(hi)}")
    return " and ".join(parts)


def allowed(spec: FieldSpec, *, text: bool = False) -> str:
    """What a field accepts, in words."""
    k = spec.kind
    rng = _range(spec.lo, spec.hi, spec.lo_open)
    if k == "int":
        out = f"an integer {rng}"
    elif k == "size":
        out = f'a size in bytes {rng}: an integer or a string such as "32MiB" or "100KB"'
    elif k == "float":
        out = f"a number {rng}"
    elif k == "bool":
        out = "true or false" + (" (or 1/0, yes/no, on/off)" if text else "")
    elif k == "choice":
        out = "one of " + ", ".join(f'"{c}"' for c in spec.choices)
    elif k == "str":
        out = f"a non-empty string of at most {spec.hi} characters"
    elif k == "name":
        out = (f'"" or up to {spec.hi} characters A-Z a-z 0-9 _ . - starting with a '
               "letter or digit")
    elif k == "path":
        out = f"an absolute path of at most {spec.max_len} bytes"
        if spec.empty_ok:
            out += ', or ""'
    elif k == "host":
        out = "an IP address or host name"
    elif k == "endpoint":
        out = '"" or tcp://HOST:PORT'
    else:  # hex
        out = f'an even number of hex digits (at most {spec.hi} bytes), or ""'
    return f"{out} ({spec.note})" if spec.note else out


def _err(key: str, origin: str, problem: str, allowed_text: str = "") -> ConfigError:
    msg = f"{key} (from {origin}): {problem}"
    if allowed_text:
        msg += f"; allowed: {allowed_text}"
    return ConfigError(msg, key=key, source=origin)


def _show(value: object) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:56] + "...'"


def _suggest(word: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _normalize(spec: FieldSpec, section: str, name: str, value: Any, origin: str, *,
               text: bool) -> Any:
    """``value`` parsed (from an environment string when ``text``) and checked."""
    key = f"{section}.{name}"
    secret = is_sensitive(name, spec)
    ok = allowed(spec, text=text)

    def got(v: object) -> str:
        return f"got {_type_name(v)} (value not shown)" if secret else f"got {_show(v)}"

    def bad(problem: str) -> ConfigError:
        return _err(key, origin, problem, ok)

    def wrong_type() -> ConfigError:
        return bad(f"got {_type_name(value)}")

    k = spec.kind
    if k in ("int", "size"):
        if isinstance(value, bool):
            raise bad(f"got {_type_name(value)}, which is not an integer")
        if isinstance(value, int):
            n = value
        elif isinstance(value, str) and (text or k == "size"):
            try:
                n = _parse_int(value) if k == "int" else parse_size(value)
            except ValueError:
                what = "an integer" if k == "int" else "a size"
                raise bad(f"{got(value)}, which is not {what}") from None
        else:
            raise wrong_type()
        if (spec.lo is not None and n < spec.lo) or (spec.hi is not None and n > spec.hi):
            raise bad(f"{got(n)}, which is out of range")
        return n
    if k == "float":
        if isinstance(value, str) and text:
            try:
                x = float(value)
            except ValueError:
                raise bad(f"{got(value)}, which is not a number") from None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            x = float(value)
        else:
            raise wrong_type()
        if not math.isfinite(x):
            raise bad(f"{got(x)}, which is not finite")
        lo, hi = spec.lo, spec.hi
        if (lo is not None and (x <= lo if spec.lo_open else x < lo)) or (
            hi is not None and x > hi
        ):
            raise bad(f"{got(x)}, which is out of range")
        return x
    if k == "bool":
        if isinstance(value, str) and text:
            b = _BOOLS.get(value.strip().lower())
            if b is None:
                raise bad(f"{got(value)}, which is not a boolean")
            return b
        if not isinstance(value, bool):
            raise wrong_type()
        return value

    # text kinds
    if k == "path" and not text and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise wrong_type()
    if "\x00" in value:
        raise bad("got a string containing a NUL character")
    if k == "choice":
        if value not in spec.choices:
            hint = _suggest(value.lower(), spec.choices)
            tail = f' (did you mean "{hint}"?)' if hint else ""
            raise bad(f"{got(value)}{tail}")
    elif k == "str":
        if not value or (spec.hi is not None and len(value) > spec.hi):
            raise bad(f"got a string of {len(value)} characters")
    elif k == "name":
        if value and (not _NAME_RE.fullmatch(value) or (spec.hi is not None
                                                         and len(value) > spec.hi)):
            raise bad(got(value))
    elif k == "path":
        if not value:
            if not spec.empty_ok:
                raise bad("got an empty string")
        elif not os.path.isabs(value):
            raise bad(f"{got(value)}, which is not an absolute path")
        elif spec.max_len is not None and len(value.encode()) > spec.max_len:
            raise bad(f"got a path of {len(value.encode())} bytes")
    elif k == "host":
        if not _is_host(value):
            raise bad(got(value))
    elif k == "endpoint":
        m = re.fullmatch(r"tcp://(.+):(\d{1,5})", value)
        if value and (m is None or not (_is_host(m[1]) or m[1] == "*")
                      or not 0 < int(m[2]) < 65536):
            raise bad(got(value))
    elif k == "hex":
        if not _HEX_RE.fullmatch(value):
            raise bad(f"{got(value)}, which is not an even number of hex digits")
        if spec.hi is not None and len(value) // 2 > spec.hi:
            raise bad(f"got {len(value) // 2} bytes")
        value = value.lower()
    return value


def _parse_int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        return int(text.strip(), 0)  # 0x.. / 0o.. / 0b..


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return _HOST_RE.fullmatch(value) is not None
    return True

"""Loading, merging and checking settings (documented in :mod:`framecrypt.conf`).

Layers, lowest first: ``defaults.toml`` (package data) ← a user TOML file ←
``FRAMECRYPT_<SECTION>__<KEY>`` environment variables ← keyword arguments. Each value
is parsed and checked as it is merged, remembering where it came from, so an error
names the key, its source and what is allowed; cross-field rules run on the merged
result. Values of sensitive keys are never put into messages.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, cast

from .errors import ConfigError
from .settings import SECTIONS, FieldSpec, Settings, _Section, spec_of
from .values import (
    SENSITIVE_WORDS,
    _err,
    _normalize,
    _suggest,
    _type_name,
    allowed,
    is_sensitive,
    parse_size,
)

ENV_PREFIX = "FRAMECRYPT_"
"""Prefix of the environment variables ``FRAMECRYPT_<SECTION>__<KEY>``."""
CONFIG_ENV_VAR = "FRAMECRYPT_CONFIG"
"""Environment variable naming a TOML file, used when no path is passed."""
SHM_RING_SLACK_BYTES = 64 * 1024
"""With transport ``shm``, ``shm.ring_bytes >= limits.max_frame_bytes`` + this (room
for the seal overhead, record headers and alignment around one maximal frame)."""
SHM_RING_BATCHES = 4
"""With transport ``shm``, ``shm.ring_bytes >= SHM_RING_BATCHES * batch.max_bytes``."""
DEFAULTS_SOURCE = "defaults"

Values = dict[str, dict[str, Any]]
Origins = dict[tuple[str, str], str]

_SPECS: dict[str, dict[str, FieldSpec]] = {
    sec: {f.name: spec_of(f) for f in dataclasses.fields(cast(Any, cls))}
    for sec, cls in SECTIONS.items()
}
_FLAT: dict[str, tuple[str, ...]] = {}
for _sec, _fields in _SPECS.items():
    for _name in _fields:
        _FLAT[_name] = (*_FLAT.get(_name, ()), _sec)
_ENV_SINGLE = {f"{s}_{k}": (s, k) for s, fs in _SPECS.items() for k in fs}
_KW_FORMS = sorted({*(k for k, secs in _FLAT.items() if len(secs) == 1),
                    *(f"{s}__{k}" for s, fs in _SPECS.items() for k in fs)})


# --- names and suggestions ------------------------------------------------------------


def _suggest_section(section: str) -> str | None:
    return _suggest(section.lower(), SECTIONS)


def _suggest_key(section: str, key: str) -> tuple[str, str] | None:
    """The (section, key) most likely meant by ``section.key``: the same key in another
    section, a close key in this section, or a close ``section.key`` anywhere."""
    k = key.lower()
    if k in _FLAT and section not in _FLAT[k]:
        return _FLAT[k][0], k
    if section in _SPECS:
        near = _suggest(k, _SPECS[section])
        if near:
            return section, near
    dotted = _suggest(f"{section}.{k}", (f"{s}.{n}" for s, fs in _SPECS.items() for n in fs))
    if dotted:
        s, _, n = dotted.partition(".")
        return s, n
    return None


def env_var(section: str, key: str) -> str:
    """The environment variable of ``section.key``: ``FRAMECRYPT_POOL__WORKERS``."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _kw_name(section: str, key: str) -> str:
    return key if len(_FLAT.get(key, ())) == 1 else f"{section}__{key}"


def _keys_of(section: str) -> str:
    return ", ".join(_SPECS[section])


# --- layers ----------------------------------------------------------------------------


def _apply_table(values: Values, origins: Origins, data: Mapping[str, Any], origin: str) -> None:
    for sec, table in data.items():
        if sec not in SECTIONS:
            if not isinstance(table, dict) and sec in _FLAT:
                where = " or ".join(f"[{s}]" for s in _FLAT[sec])
                raise ConfigError(
                    f"{sec} (from {origin}): a key outside any section; allowed: inside "
                    f"a section, e.g. {sec} in {where}", key=sec, source=origin)
            hint = _suggest_section(sec)
            raise ConfigError(
                f"[{sec}] (from {origin}): unknown section"
                + (f"; did you mean [{hint}]?" if hint else "")
                + f" Sections: {', '.join(SECTIONS)}", key=sec, source=origin)
        if not isinstance(table, dict):
            raise _err(sec, origin, f"got {_type_name(table)}", f"a table [{sec}]")
        for name, value in table.items():
            if name not in _SPECS[sec]:
                near = _suggest_key(sec, name)
                raise ConfigError(
                    f"{sec}.{name} (from {origin}): unknown key"
                    + (f"; did you mean {near[0]}.{near[1]}?" if near else "")
                    + f" Keys of [{sec}]: {_keys_of(sec)}", key=f"{sec}.{name}", source=origin)
            values[sec][name] = _normalize(_SPECS[sec][name], sec, name, value, origin, text=False)
            origins[(sec, name)] = origin


@functools.cache
def _defaults_data() -> dict[str, Any]:
    pkg = __package__ or "framecrypt.conf"
    text = resources.files(pkg).joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _defaults_layer() -> tuple[Values, Origins]:
    values: Values = {sec: {} for sec in SECTIONS}
    origins: Origins = {}
    _apply_table(values, origins, _defaults_data(), DEFAULTS_SOURCE)
    for sec, specs in _SPECS.items():
        for name in specs:
            if name not in values[sec]:
                raise ConfigError(f"{sec}.{name} (from {DEFAULTS_SOURCE}): missing from "
                                  "defaults.toml", key=f"{sec}.{name}", source=DEFAULTS_SOURCE)
    return values, origins


def _apply_file(values: Values, origins: Origins, path: object, *, via_env: bool) -> None:
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"path: got {_type_name(path)}; allowed: a str or os.PathLike",
                          key=None, source="keyword argument path=")
    p = os.fsdecode(os.fspath(path))
    origin = f"file {p}" + (f" named by {CONFIG_ENV_VAR}" if via_env else "")
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as e:
        raise ConfigError(f"cannot read {origin}: {e.strerror or type(e).__name__}",
                          source=origin) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{origin} is not valid TOML: {e}", source=origin) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{origin} is not valid TOML: not UTF-8", source=origin) from None
    _apply_table(values, origins, data, origin)


def _apply_env(values: Values, origins: Origins, environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV_VAR:
            continue
        origin = f"environment variable {name}"
        rest = name[len(ENV_PREFIX):]
        sec, sep, key = rest.partition("__")
        if not sep:
            guess = _ENV_SINGLE.get(rest.lower())
            if guess:  # FRAMECRYPT_POOL_WORKERS: one underscore too few
                raise ConfigError(
                    f"{name} (environment variable) is not a setting; did you mean "
                    f"{env_var(*guess)}? (two underscores between section and key)",
                    key=f"{guess[0]}.{guess[1]}", source=origin)
            continue  # some other FRAMECRYPT_* variable, not ours to judge
        sec, key = sec.lower(), key.lower()
        if sec not in SECTIONS:
            hint = _suggest_section(sec)
            raise ConfigError(
                f"{name} (environment variable): unknown section {sec!r}"
                + (f"; did you mean {env_var(hint, key)}?" if hint else "")
                + f" Sections: {', '.join(SECTIONS)}", key=sec, source=origin)
        if key not in _SPECS[sec]:
            near = _suggest_key(sec, key)
            raise ConfigError(
                f"{name} (environment variable): unknown key {sec}.{key}"
                + (f"; did you mean {env_var(*near)}?" if near else "")
                + f" Keys of [{sec}]: {_keys_of(sec)}", key=f"{sec}.{key}", source=origin)
        value = environ[name]
        if not isinstance(value, str):
            raise _err(f"{sec}.{key}", origin, f"got {_type_name(value)}",
                       "environment values are strings")
        values[sec][key] = _normalize(_SPECS[sec][key], sec, key, value, origin, text=True)
        origins[(sec, key)] = origin


def _apply_kwargs(values: Values, origins: Origins, overrides: Mapping[str, Any],
                  label: Callable[[str], str]) -> None:
    for kw, value in overrides.items():
        if value is None:  # not given: lets a CLI pass its optional arguments through
            continue
        origin = label(kw)
        sec, sep, key = kw.partition("__")
        if not sep:
            key = kw
            secs = _FLAT.get(kw, ())
            if len(secs) > 1:
                forms = " or ".join(f"{s}__{kw}=" for s in secs)
                raise ConfigError(f"{kw}= (from {origin}): ambiguous, [{'] and ['.join(secs)}]"
                                  f" both have it; allowed: {forms}", key=kw, source=origin)
            if not secs:
                if kw in SECTIONS:
                    raise ConfigError(f"{kw}= (from {origin}): a section, not a key; allowed:"
                                      f" {kw}__<key>= with <key> one of {_keys_of(kw)}",
                                      key=kw, source=origin)
                hint = _suggest(kw, _KW_FORMS)
                raise ConfigError(
                    f"{kw}= (from {origin}): unknown setting"
                    + (f"; did you mean {hint}=?" if hint else "")
                    + " Allowed: a key name unique across sections (workers=) or "
                    "<section>__<key>= (shm__dir=)", key=kw, source=origin)
            sec = secs[0]
        elif sec not in SECTIONS or key not in _SPECS[sec]:
            near = (_suggest_key(sec, key) if sec in SECTIONS
                    else _suggest_key(_suggest_section(sec) or sec, key))
            hint = f"{near[0]}__{near[1]}" if near else None
            raise ConfigError(
                f"{kw}= (from {origin}): unknown setting {sec}.{key}"
                + (f"; did you mean {hint}=?" if hint else ""), key=f"{sec}.{key}",
                source=origin)
        values[sec][key] = _normalize(_SPECS[sec][key], sec, key, value, origin, text=False)
        origins[(sec, key)] = origin


# --- cross-field rules -------------------------------------------------------------------


def _check_cross(v: Mapping[str, Mapping[str, Any]], origin: Callable[[str, str], str]) -> None:
    def at(dotted: str) -> str:
        s, _, k = dotted.partition(".")
        return f"{dotted} = {v[s][k]!r} (from {origin(s, k)})"

    def need(ok: bool, a: str, relation: str, b: str, rule: str) -> None:
        if not ok:
            s, _, k = a.partition(".")
            raise ConfigError(f"{at(a)} {relation} {at(b)}; allowed: {rule}",
                              key=a, source=origin(s, k))

    lim, batch = v["limits"], v["batch"]
    for kind in ("frames", "bytes"):
        w, g = f"limits.worker_{kind}_in_flight", f"limits.max_{kind}_in_flight"
        need(lim[f"worker_{kind}_in_flight"] <= lim[f"max_{kind}_in_flight"],
             w, "is greater than", g, f"{w} <= {g}")
    need(lim["max_frame_bytes"] <= lim["worker_bytes_in_flight"],
         "limits.max_frame_bytes", "is greater than", "limits.worker_bytes_in_flight",
         "a frame of limits.max_frame_bytes fits one worker's byte credit")
    need(batch["max_frames"] <= lim["worker_frames_in_flight"],
         "batch.max_frames", "is greater than", "limits.worker_frames_in_flight",
         "batch.max_frames <= limits.worker_frames_in_flight")
    need(batch["max_bytes"] <= lim["worker_bytes_in_flight"],
         "batch.max_bytes", "is greater than", "limits.worker_bytes_in_flight",
         "batch.max_bytes <= limits.worker_bytes_in_flight")
    if v["pool"]["transport"] == "shm":
        ring = v["shm"]["ring_bytes"]
        need(ring >= SHM_RING_BATCHES * batch["max_bytes"],
             "shm.ring_bytes", f"is less than {SHM_RING_BATCHES} ×", "batch.max_bytes",
             f'shm.ring_bytes >= {SHM_RING_BATCHES} × batch.max_bytes with transport "shm"')
        need(ring >= lim["max_frame_bytes"] + SHM_RING_SLACK_BYTES,
             "shm.ring_bytes", f"is less than {SHM_RING_SLACK_BYTES} +", "limits.max_frame_bytes",
             f"shm.ring_bytes >= limits.max_frame_bytes + {SHM_RING_SLACK_BYTES} with "
             'transport "shm"')
    sup = v["supervision"]
    need(sup["respawn_backoff_s"] <= sup["respawn_backoff_max_s"],
         "supervision.respawn_backoff_s", "is greater than", "supervision.respawn_backoff_max_s",
         "supervision.respawn_backoff_s <= supervision.respawn_backoff_max_s")
    rem = v["remote"]
    if rem["listen"] and not (rem["secret_key_file"] and rem["allowed_keys_dir"]):
        raise ConfigError(
            f"{at('remote.listen')} needs remote.secret_key_file and remote.allowed_keys_dir: "
            "a tcp endpoint is refused without CURVE keys (make them with `framecrypt keygen`)",
            key="remote.listen", source=origin("remote", "listen"))


# --- building --------------------------------------------------------------------------


def _build(values: Values) -> Settings:
    sections = {sec: cls(**values[sec]) for sec, cls in SECTIONS.items()}
    return Settings(**cast(Any, sections))


def _init_section(obj: _Section) -> None:
    """``__post_init__`` of a section: check and normalise every field in place."""
    origin = f"{type(obj).__name__}(...)"
    specs = _SPECS[obj.SECTION]
    for name, spec in specs.items():
        value = _normalize(spec, obj.SECTION, name, getattr(obj, name), origin, text=False)
        object.__setattr__(obj, name, value)


def _init_settings(s: Settings) -> None:
    """``__post_init__`` of :class:`Settings`: section types and cross-field rules."""
    origin = "Settings(...)"
    for sec, cls in SECTIONS.items():
        val = getattr(s, sec)
        if type(val) is not cls:
            raise _err(sec, origin, f"got {_type_name(val)}", f"a {cls.__name__}")
    _check_cross(s.as_dict(), lambda _s, _k: origin)


def _replace(s: Settings, overrides: Mapping[str, Any]) -> Settings:
    values = s.as_dict()
    origins: Origins = {}
    _apply_kwargs(values, origins, overrides,
                  lambda kw: f"keyword argument {kw}= of Settings.replace()")
    _check_cross(values, lambda sec, k: origins.get((sec, k), "the settings replaced"))
    return _build(values)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from defaults ← ``path`` (or ``$FRAMECRYPT_CONFIG`` when ``path`` is
    None) ← ``FRAMECRYPT_<SECTION>__<KEY>`` variables of ``env`` (``os.environ`` when
    None; pass ``{}`` to ignore the environment) ← ``overrides`` (``workers=2`` for a
    key name unique across sections, else ``shm__dir=...``; ``None`` values are
    ignored). Raises :class:`ConfigError`. See :mod:`framecrypt.conf`."""
    environ: Mapping[str, str] = os.environ if env is None else env
    values, origins = _defaults_layer()
    if path is not None:
        _apply_file(values, origins, path, via_env=False)
    elif environ.get(CONFIG_ENV_VAR):
        _apply_file(values, origins, environ[CONFIG_ENV_VAR], via_env=True)
    _apply_env(values, origins, environ)
    _apply_kwargs(values, origins, overrides, lambda kw: f"keyword argument {kw}=")
    _check_cross(values, lambda sec, k: origins[(sec, k)])
    return _build(values)


def default_settings() -> Settings:
    """The settings of ``defaults.toml`` alone (no file, environment or overrides)."""
    return load_settings(env={})


__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "SENSITIVE_WORDS",
    "SHM_RING_BATCHES",
    "SHM_RING_SLACK_BYTES",
    "allowed",
    "default_settings",
    "env_var",
    "is_sensitive",
    "load_settings",
    "parse_size",
]

"""The settings of framecrypt as frozen, slotted, picklable dataclasses.

One class per ``[section]`` of ``defaults.toml``; :class:`Settings` holds one of each.
Every field carries a :class:`FieldSpec` (in its dataclass metadata) that
``framecrypt.conf.load`` uses to parse and check values from any source.

Every instance is valid: constructing a section checks its fields, constructing
:class:`Settings` checks the cross-field rules, and both raise
:class:`~framecrypt.conf.errors.ConfigError`. The dataclass defaults equal
``defaults.toml`` (a test compares the two); :func:`~framecrypt.conf.load_settings`
reads the file, so the file is what loading uses.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Kind = Literal["int", "size", "float", "bool", "choice", "str", "name", "path", "host", "hex",
               "endpoint"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one field is parsed and checked.

    ``kind``: ``int`` (strict, a bool is not an int), ``size`` (an int or a size
    string such as ``"32MiB"``), ``float`` (an int or float, finite), ``bool``,
    ``choice`` (one of ``choices``), ``str`` (non-empty text), ``name`` (a short
    identifier, may be empty), ``path`` (absolute; empty if ``empty_ok``), ``host``
    (an IP address or host name), ``hex`` (an even number of hex digits, may be empty).
    ``lo``/``hi`` bound numbers (``lo_open``: ``lo`` itself is excluded) and text
    lengths (``hi`` for ``hex`` counts bytes; ``max_len`` for ``path`` counts UTF-8
    bytes). ``sensitive`` values are never shown in errors or reprs; so is the value of
    any key whose name contains key/secret/passphrase/material. ``note`` is appended
    to the description of what is allowed.
    """

    kind: Kind
    lo: int | float | None = None
    hi: int | float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    empty_ok: bool = False
    max_len: int | None = None
    sensitive: bool = False
    note: str = ""


def _f(default: Any, kind: Kind, **spec: Any) -> Any:
    fs = FieldSpec(kind, **spec)
    return field(default=default, metadata={"spec": fs}, repr=not fs.sensitive)


def spec_of(f: dataclasses.Field[Any]) -> FieldSpec:
    """The :class:`FieldSpec` of a section field."""
    spec = f.metadata["spec"]
    assert isinstance(spec, FieldSpec)
    return spec


class _Section:
    """Base of the section classes: checks and normalises fields on construction."""

    __slots__ = ()
    SECTION: ClassVar[str]

    def __post_init__(self) -> None:
        from .load import _init_section

        _init_section(self)

    def as_dict(self) -> dict[str, Any]:
        """The section's fields as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


# --- sections ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolSettings(_Section):
    """``[pool]``: the worker pool."""

    SECTION: ClassVar[str] = "pool"
    workers: int = _f(0, "int", lo=0, hi=1024, note="0 = os.cpu_count()")
    transport: str = _f("shm", "choice", choices=("shm", "ipc", "inline"))
    format: str = _f("livekit", "choice", choices=("livekit", "jitsi", "sframe", "dave"))
    placement: str = _f("auto", "choice", choices=("auto", "inline", "pool"))
    name: str = _f("", "name", hi=32, note='"" = generated per pool')
    worker_sched: str = _f("normal", "choice", choices=("normal", "batch", "idle"))

    def resolved_workers(self) -> int:
        """``workers``, with 0 replaced by ``os.cpu_count()`` (at least 1)."""
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class BatchSettings(_Section):
    """``[batch]``: how frames are grouped into one message to a worker."""

    SECTION: ClassVar[str] = "batch"
    max_frames: int = _f(64, "int", lo=1, hi=65535)
    max_bytes: int = _f(100 * KiB, "size", lo=1, hi=GiB)
    flush: str = _f("idle", "choice", choices=("idle",))


@dataclass(frozen=True, slots=True)
class LimitsSettings(_Section):
    """``[limits]``: credits (frames and bytes in flight), globally and per worker."""

    SECTION: ClassVar[str] = "limits"
    max_frames_in_flight: int = _f(16384, "int", lo=1)
    max_bytes_in_flight: int = _f(256 * MiB, "size", lo=1)
    worker_frames_in_flight: int = _f(4096, "int", lo=1)
    worker_bytes_in_flight: int = _f(64 * MiB, "size", lo=1)
    max_frame_bytes: int = _f(4 * MiB, "size", lo=1, hi=GiB)
    on_overload: str = _f("wait", "choice", choices=("wait", "reject"))


@dataclass(frozen=True, slots=True)
class ShmSettings(_Section):
    """``[shm]``: shared-memory rings (transport ``shm``)."""

    SECTION: ClassVar[str] = "shm"
    ring_bytes: int = _f(32 * MiB, "size", lo=64 * KiB, note="per direction per worker")
    dir: str = _f("/dev/shm", "path", max_len=200)


@dataclass(frozen=True, slots=True)
class IpcSettings(_Section):
    """``[ipc]``: ZeroMQ ``ipc://`` endpoints."""

    SECTION: ClassVar[str] = "ipc"
    # Unix socket paths are limited to 107 bytes: leave room for the endpoint names.
    dir: str = _f("", "path", empty_ok=True, max_len=80,
                  note='"" = $XDG_RUNTIME_DIR/framecrypt or /tmp/framecrypt-<uid>')

    def resolved_dir(self, environ: Mapping[str, str] | None = None) -> str:
        """``dir``, or when empty ``$XDG_RUNTIME_DIR/framecrypt`` if that variable is
        set to an absolute path, else ``<tmp>/framecrypt-<uid>``. Creates nothing."""
        if self.dir:
            return self.dir
        env = os.environ if environ is None else environ
        xdg = env.get("XDG_RUNTIME_DIR", "")
        if xdg and os.path.isabs(xdg):
            return os.path.join(xdg, "framecrypt")
        uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
        tmp = "/tmp" if os.name == "posix" else tempfile.gettempdir()
        return os.path.join(tmp, f"framecrypt-{uid}")


@dataclass(frozen=True, slots=True)
class SupervisionSettings(_Section):
    """``[supervision]``: worker liveness, re-dispatch and respawn."""

    SECTION: ClassVar[str] = "supervision"
    heartbeat_interval_s: float = _f(0.25, "float", lo=0, lo_open=True, hi=60)
    heartbeat_liveness: int = _f(4, "int", lo=1, hi=1000, note="missed beats before dead")
    dispatch_attempts: int = _f(3, "int", lo=1, hi=100)
    respawn_backoff_s: float = _f(0.1, "float", lo=0, lo_open=True, hi=3600)
    respawn_backoff_max_s: float = _f(5.0, "float", lo=0, lo_open=True, hi=3600)
    shutdown_timeout_s: float = _f(5.0, "float", lo=0, lo_open=True, hi=3600)


@dataclass(frozen=True, slots=True)
class RealtimeSettings(_Section):
    """``[realtime]``: latency policy."""

    SECTION: ClassVar[str] = "realtime"
    latency_budget_ms: int = _f(0, "int", lo=0, hi=60000, note="0 = off")


@dataclass(frozen=True, slots=True)
class LivekitSettings(_Section):
    """``[livekit]``: LiveKit frame format options (format ``jitsi`` uses
    ``ratchet_window`` and ``keyring_size``; the rest is fixed by lib-jitsi-meet)."""

    SECTION: ClassVar[str] = "livekit"
    ratchet_window: int = _f(8, "int", lo=0, hi=256)
    failure_tolerance: int = _f(10, "int", lo=-1, note="-1 = never mark a key invalid")
    keyring_size: int = _f(16, "int", lo=1, hi=256)
    ratchet_salt: str = _f("LKFrameEncryptionKey", "str", hi=256, sensitive=True)
    sif_trailer: str = _f("", "hex", hi=256, sensitive=True, note='"" = none')
    iv: str = _f("counter", "choice", choices=("counter", "livekit"))
    strip_lkts: bool = _f(True, "bool")

    @property
    def ratchet_salt_bytes(self) -> bytes:
        """``ratchet_salt`` as UTF-8 bytes."""
        return self.ratchet_salt.encode()

    @property
    def sif_trailer_bytes(self) -> bytes | None:
        """``sif_trailer`` decoded, or ``None`` when empty."""
        return bytes.fromhex(self.sif_trailer) if self.sif_trailer else None


@dataclass(frozen=True, slots=True)
class SFrameSettings(_Section):
    """``[sframe]``: SFrame (RFC 9605) options."""

    SECTION: ClassVar[str] = "sframe"
    suite: int = _f(4, "int", lo=1, hi=8, note="RFC 9605 cipher suite id; 6..8 are provisional")
    ratchet_bits: int = _f(0, "int", lo=0, hi=63, note="0 = no ratchet KID layout")

    @property
    def provisional(self) -> bool:
        """True for the provisional suites 0x0006–0x0008 (not in RFC 9605's registry)."""
        return self.suite >= 6


@dataclass(frozen=True, slots=True)
class MetricsSettings(_Section):
    """``[metrics]``: the HTTP metrics endpoint, per-participant counts and health."""

    SECTION: ClassVar[str] = "metrics"
    http_port: int = _f(0, "int", lo=0, hi=65535, note="0 = off")
    http_addr: str = _f("127.0.0.1", "host")
    participant_labels: int = _f(100, "int", lo=0, hi=10000,
                                 note='the rest are counted as participant="_other"')
    label_max_chars: int = _f(64, "int", lo=16, hi=256)
    streams_per_participant: int = _f(16, "int", lo=1, hi=1024)
    recover_after_frames: int = _f(8, "int", lo=1, hi=1000000)


@dataclass(frozen=True, slots=True)
class RemoteSettings(_Section):
    """``[remote]``: crypto workers on other hosts over ZeroMQ tcp with CurveZMQ."""

    SECTION: ClassVar[str] = "remote"
    listen: str = _f("", "endpoint", note='"" = no remote workers')
    secret_key_file: str = _f("", "path", empty_ok=True, max_len=4096,
                              note="the broker's CURVE key pair (framecrypt keygen)")
    allowed_keys_dir: str = _f("", "path", empty_ok=True, max_len=4096,
                               note="directory of the public keys of allowed workers")


@dataclass(frozen=True, slots=True)
class PlacementSettings(_Section):
    """``[placement]``: the ``auto`` placement policy."""

    SECTION: ClassVar[str] = "placement"
    inline_max_bytes: int = _f(4 * MiB, "size", lo=0, hi=GiB, note="0 = never inline")
    inline_budget: float = _f(0.5, "float", lo=0, hi=1)


# --- all of them -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings, one attribute per section. Build with
    :func:`~framecrypt.conf.load_settings`; derive with :meth:`replace`."""

    pool: PoolSettings = field(default_factory=PoolSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    shm: ShmSettings = field(default_factory=ShmSettings)
    ipc: IpcSettings = field(default_factory=IpcSettings)
    supervision: SupervisionSettings = field(default_factory=SupervisionSettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    livekit: LivekitSettings = field(default_factory=LivekitSettings)
    sframe: SFrameSettings = field(default_factory=SFrameSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    placement: PlacementSettings = field(default_factory=PlacementSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)

    def __post_init__(self) -> None:
        from .load import _init_settings

        _init_settings(self)

    def replace(self, **overrides: Any) -> Settings:
        """A validated copy with ``overrides`` applied, named like the keyword
        arguments of :func:`~framecrypt.conf.load_settings` (``workers=2`` or
        ``pool__workers=2``; ``None`` means not given)."""
        from .load import _replace

        return _replace(self, overrides)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """``{section: {key: value}}`` with plain values (sensitive ones included)."""
        return {name: getattr(self, name).as_dict() for name in SECTIONS}


SECTIONS: Mapping[str, type[_Section]] = {
    cls.SECTION: cls
    for cls in (
        PoolSettings,
        BatchSettings,
        LimitsSettings,
        ShmSettings,
        IpcSettings,
        SupervisionSettings,
        RealtimeSettings,
        LivekitSettings,
        SFrameSettings,
        MetricsSettings,
        PlacementSettings,
        RemoteSettings,
    )
}
"""Section name → section class, in ``defaults.toml`` order."""

__all__ = [
    "SECTIONS",
    "BatchSettings",
    "FieldSpec",
    "IpcSettings",
    "LimitsSettings",
    "LivekitSettings",
    "MetricsSettings",
    "PlacementSettings",
    "PoolSettings",
    "RealtimeSettings",
    "SFrameSettings",
    "Settings",
    "ShmSettings",
    "SupervisionSettings",
    "spec_of",
]

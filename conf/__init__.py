"""framecrypt.conf: the settings of a framecrypt pool, from defaults, a file, the
environment and keyword arguments.

Sources, lowest precedence first:

1. ``defaults.toml`` in this package: every setting, its default and a comment.
   It is the reference for what each key means.
2. A user TOML file: the ``path`` argument of :func:`load_settings`, or when that
   is None the file named by ``$FRAMECRYPT_CONFIG``. Same sections and keys; name
   only what you change.
3. Environment variables ``FRAMECRYPT_<SECTION>__<KEY>`` (two underscores between
   section and key; names are matched case-insensitively after the prefix), e.g.
   ``FRAMECRYPT_POOL__WORKERS=4``, ``FRAMECRYPT_LIMITS__ON_OVERLOAD=reject``,
   ``FRAMECRYPT_SHM__RING_BYTES=64MiB``. Values are parsed by the field's type:
   integers (``4``, ``-1``, ``0x10``), numbers (``0.25``), booleans
   (``true/false/1/0/yes/no/on/off``), strings as given. Other ``FRAMECRYPT_*``
   variables without ``__`` are ignored, except a likely typo such as
   ``FRAMECRYPT_POOL_WORKERS``, which is an error.
4. Keyword arguments: a key name that is unique across sections (``workers=2``,
   ``transport="ipc"``, ``placement="pool"`` is ``pool.placement``) or
   ``<section>__<key>`` (``shm__dir="/run/fc"``, ``placement__inline_budget=0.3``).
   ``None`` means "not given", so optional CLI arguments can be passed straight on.

Types are strict: a boolean is not an integer, sizes are integers, numbers must be
finite. Fields ending in ``_bytes`` also take size strings (``"32MiB"``,
``"100KB"``, ``"1.5 GiB"``: B/KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of
1000). Numbers are range-checked, enumerations matched exactly, and cross-field
rules checked on the merged result (in-flight limits per worker <= global ones,
a maximal frame and a batch fit one worker's credit, with transport ``shm`` the
ring holds 4 batches and a maximal frame plus 64 KiB, respawn backoff <= its
maximum). Unknown sections and keys are errors with a "did you mean"
suggestion. Every failure is a :class:`ConfigError` (a ``ValueError`` and a
``FramecryptError``) whose message names the key path, the source (``defaults``,
``file <path>``, ``environment variable <NAME>``, ``keyword argument <name>=``) and
what is allowed; the value of a sensitive key (name containing key, secret,
passphrase or material; ``livekit.sif_trailer``; ``livekit.ratchet_salt``) is
never shown, nor in reprs.

:class:`Settings` is a frozen, slotted, picklable dataclass with one attribute per
section (``settings.pool.workers``); every instance is valid.
``settings.replace(**overrides)`` returns a checked copy (same keyword forms),
``settings.as_dict()`` plain ``{section: {key: value}}``.

Example (``env={}`` keeps the process environment out of it)::

    >>> import os, tempfile
    >>> from framecrypt.conf import ConfigError, load_settings
    >>> s = load_settings(env={})
    >>> s.pool.transport, s.batch.max_frames, s.limits.on_overload
    ('shm', 64, 'wait')
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "fc.toml")
    ...     with open(path, "w") as fh:
    ...         _ = fh.write('[pool]\\nworkers = 8\\n[shm]\\nring_bytes = "64MiB"\\n')
    ...     s = load_settings(path, env={"FRAMECRYPT_POOL__WORKERS": "4"}, transport="ipc")
    >>> s.pool.workers, s.pool.transport, s.shm.ring_bytes
    (4, 'ipc', 67108864)
    >>> s.replace(limits__on_overload="reject", inline_budget=0.25).limits.on_overload
    'reject'
    >>> try:
    ...     load_settings(env={"FRAMECRYPT_POOL__WORKRS": "2"})
    ... except ConfigError as e:
    ...     print(e.key, "|", e.source)
    pool.workrs | environment variable FRAMECRYPT_POOL__WORKRS
"""

from __future__ import annotations

from .errors import ConfigError
from .load import (
    CONFIG_ENV_VAR,
    ENV_PREFIX,
    default_settings,
    env_var,
    load_settings,
    parse_size,
)
from .settings import (
    SECTIONS,
    BatchSettings,
    IpcSettings,
    LimitsSettings,
    LivekitSettings,
    MetricsSettings,
    PlacementSettings,
    PoolSettings,
    RealtimeSettings,
    RemoteSettings,
    Settings,
    SFrameSettings,
    ShmSettings,
    SupervisionSettings,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "SECTIONS",
    "BatchSettings",
    "ConfigError",
    "IpcSettings",
    "LimitsSettings",
    "LivekitSettings",
    "MetricsSettings",
    "PlacementSettings",
    "PoolSettings",
    "RealtimeSettings",
    "RemoteSettings",
    "SFrameSettings",
    "Settings",
    "ShmSettings",
    "SupervisionSettings",
    "default_settings",
    "env_var",
    "load_settings",
    "parse_size",
]

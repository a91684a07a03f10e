"""The one error of configuration loading: :class:`ConfigError`.

Its message names the offending key path (``pool.workers``), the source the value
came from (``defaults``, a file path, an environment variable name, a keyword
argument) and what is allowed. It never shows the value of a sensitive key (a
name containing ``key``, ``secret``, ``passphrase`` or ``material``, and a few
others marked sensitive such as ``livekit.sif_trailer``).
"""

from __future__ import annotations

from framecrypt.errors import FramecryptError


class ConfigError(FramecryptError, ValueError):
    """A configuration value, key, section or source that cannot be used.

    Attributes (all may be ``None`` for errors not tied to one key):

    - ``key``: the dotted key path, e.g. ``"limits.on_overload"``, or ``"[pol]"``
      for an unknown section;
    - ``source``: where the value came from, e.g. ``"environment variable
      FRAMECRYPT_POOL__WORKERS"`` or ``"file /etc/framecrypt.toml"``.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        super().__init__(message)
        self.key = key
        self.source = source


__all__ = ["ConfigError"]

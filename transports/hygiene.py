"""Names and cleanup of a pool's OS resources: shm segments and ipc socket files.

Every file a pool creates is named after its *pool tag* ``fc-<pid>-<nonce>``: the
broker's pid and a random nonce (:func:`new_pool_tag`). The pid in the name is what
makes crash cleanup possible: :func:`sweep_stale`, called when a pool starts,
removes the framecrypt files of brokers that are no longer alive (SIGKILL, OOM
kill) and that belong to us. A segment is removed only if, in addition, nobody
has it mapped: every :class:`~framecrypt.transports.shm.Segment` holds a shared
``flock`` while mapped, and the sweep needs the exclusive one. That keeps the
segments of a live broker in another pid namespace sharing ``/dev/shm`` (two
containers of one pod), and those an orphaned worker still maps.

- segments: ``segment_name(tag, worker, "req" | "rep")`` in ``/dev/shm``, only where
  anonymous segments are unavailable (:func:`~framecrypt.transports.shm.memfd_supported`
  is False): a memfd has no name, nothing to sweep, and its memory is freed with its
  last holder (:mod:`framecrypt.transports.shm`);
- ipc endpoints: ``socket_path(runtime_dir(), tag, purpose)``, inside a private
  (``0700``) directory, :func:`runtime_dir`. A socket file holds no data; after a
  crash it is an empty name in our private directory until the next sweep.

Why the ipc endpoint keeps its file (no abstract socket). Linux abstract endpoints,
``ipc://@name``, work in this pyzmq/libzmq (27.x/4.3.5, tests/test_memfd.py) and leave
no file, but they have no permissions: any process in the network namespace may
connect. ``ZMQ_IPC_FILTER_UID`` (``SO_PEERCRED``) does refuse other uids in this build
(the connection is closed at accept, ``ZMQ_EVENT_ACCEPT_FAILED``), yet it cannot tell
apart processes of the same uid in other mount namespaces: the containers of a pod
share the network namespace and often the uid (root). A socket file in a ``0700``
directory of our own mount namespace is out of their reach, so it stays. (Nor can a
worker check who listens on an abstract name: once its broker dies, anyone may bind
it.) The file costs one empty inode after a crash, removed by the next sweep.

Cleanup is explicit, never ``atexit``: the pool records what it created in a
:class:`Registry` and calls :meth:`Registry.cleanup` when it closes; whatever a
crash leaves behind is swept by the next pool.

Limits: a stale file whose pid has been reused by a live process stays until that
process exits (we never remove what might be alive); a zombie counts as alive until
its parent reaps it. Socket files have no lock: two brokers in different pid
namespaces must not share a runtime directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from typing import Final, Literal

from framecrypt.transports.errors import InvalidName, TransportError, UnsafePath
from framecrypt.transports.shm import validate_name

Direction = Literal["req", "rep"]
REQUEST: Final = "req"
REPLY: Final = "rep"

DIR_MODE: Final = 0o700

# fc-<pid>-<nonce>, optionally followed by "-..." or "...." (worker, direction, suffix)
_TAG = r"fc-([1-9][0-9]{0,9})-([A-Za-z0-9]{1,32})"
_TAG_RE: Final = re.compile(_TAG)
_TAGGED_NAME_RE: Final = re.compile(_TAG + r"(?:[-.][A-Za-z0-9._-]*)?")
_PURPOSE_RE: Final = re.compile(r"[A-Za-z0-9_]{1,32}")
_SUN_PATH_MAX: Final = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


# --- names -------------------------------------------------------------------------------


def pool_tag(pid: int, nonce: str) -> str:
    """``fc-<pid>-<nonce>``; ``pid`` > 0, ``nonce`` 1–32 of ``[A-Za-z0-9]``."""
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 10**10:
        raise InvalidName(f"pool tag pid must be a positive int, got {pid!r}")
    if not isinstance(nonce, str) or not re.fullmatch(r"[A-Za-z0-9]{1,32}", nonce):
        raise InvalidName(f"pool tag nonce must be 1-32 of [A-Za-z0-9], got {nonce!r}")
    return f"fc-{pid}-{nonce}"


def new_pool_tag() -> str:
    """A fresh tag for a pool started by this process: our pid and a random nonce."""
    return pool_tag(os.getpid(), secrets.token_hex(6))


def parse_tag(name: str) -> tuple[int, str] | None:
    """``(pid, nonce)`` of a framecrypt resource name (a tag, or a tag followed by
    ``-`` or ``.`` and more), else ``None``."""
    m = _TAGGED_NAME_RE.fullmatch(name)
    return None if m is None else (int(m[1]), m[2])


def _check_tag(tag: str) -> None:
    if not isinstance(tag, str) or _TAG_RE.fullmatch(tag) is None:
        raise InvalidName(f"not a pool tag: {tag!r}")


def segment_name(tag: str, worker: int, direction: Direction) -> str:
    """``<tag>-w<worker>-<req|rep>``, the name of a worker's request or reply segment."""
    _check_tag(tag)
    if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < 10**6:
        raise InvalidName(f"worker index must be an int in [0, 10**6), got {worker!r}")
    if direction not in (REQUEST, REPLY):
        raise InvalidName(f"direction must be 'req' or 'rep', got {direction!r}")
    return validate_name(f"{tag}-w{worker}-{direction}")


def socket_path(directory: str, tag: str, purpose: str) -> str:
    """``<directory>/<tag>-<purpose>.ipc``, the file of a ZeroMQ ``ipc://`` endpoint.

    Raises :class:`InvalidName` for a bad purpose (1–32 of ``[A-Za-z0-9_]``) or if the
    path is longer than a Unix socket address can hold (107 bytes).
    """
    _check_tag(tag)
    if not isinstance(purpose, str) or _PURPOSE_RE.fullmatch(purpose) is None:
        raise InvalidName(f"socket purpose must be 1-32 of [A-Za-z0-9_], got {purpose!r}")
    path = os.path.join(directory, f"{tag}-{purpose}.ipc")
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise InvalidName(f"socket path {path!r} is longer than {_SUN_PATH_MAX} bytes")
    return path


# --- the private runtime directory -------------------------------------------------------


def _usable_xdg(xdg: str, uid: int) -> bool:
    if not os.path.isabs(xdg):
        return False
    try:
        st = os.stat(xdg)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022


def runtime_dir(*, environ: Mapping[str, str] | None = None, fallback_root: str = "/tmp") -> str:
    """The private directory for ipc endpoints, created ``0700`` if missing.

    ``$XDG_RUNTIME_DIR/framecrypt`` when ``XDG_RUNTIME_DIR`` is set to an absolute
    directory owned by us and not writable by others; else
    ``<fallback_root>/framecrypt-<uid>``. Raises :class:`UnsafePath` if the path
    exists but is not a directory (a symlink is not followed), is owned by someone
    else, or has a mode other than ``0700``.
    """
    env = os.environ if environ is None else environ
    uid = os.geteuid()
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg and _usable_xdg(xdg, uid):
        path = os.path.join(xdg, "framecrypt")
    else:
        path = os.path.join(fallback_root, f"framecrypt-{uid}")
    _ensure_private_dir(path, uid)
    return path


def _ensure_private_dir(path: str, uid: int) -> None:
    created = False
    try:
        os.mkdir(path, DIR_MODE)
        created = True
    except FileExistsError:
        pass
    except OSError as e:
        raise TransportError(f"cannot create directory {path!r}: {e.strerror}") from e
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(path, "not a directory (or a symlink)") from e
        raise TransportError(f"cannot open directory {path!r}: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if st.st_uid != uid:
            raise UnsafePath(path, f"owned by uid {st.st_uid}, not by us")
        if created:  # the umask may have cleared bits of DIR_MODE
            os.fchmod(fd, DIR_MODE)
            st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != DIR_MODE:
            raise UnsafePath(path, f"mode 0o{stat.S_IMODE(st.st_mode):o}, not 0o700")
    finally:
        os.close(fd)


# --- crash cleanup -----------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours or not). Unknown counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process / not a pid: leave it
        return True
    return True


def sweep_stale(shm_dir: str, runtime_dir: str) -> list[str]:
    """Remove the framecrypt segments (in ``shm_dir``) and ipc socket files (in
    ``runtime_dir``) left by pools whose broker is dead. Returns the removed paths.

    Only names that parse as ``fc-<pid>-<nonce>...`` are considered, and of those only
    regular files and sockets (symlinks and directories are left alone) owned by our
    effective uid whose pid no longer exists; a regular file also only if no process
    holds its ``flock`` (no one has the segment mapped). A missing directory is
    skipped; files that cannot be removed are left. Never raises for a single file.
    """
    uid = os.geteuid()
    removed: list[str] = []
    for directory in (shm_dir, runtime_dir):
        removed.extend(_sweep_dir(directory, uid))
    return removed


def _sweep_dir(directory: str, uid: int) -> list[str]:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed: list[str] = []
    alive: dict[int, bool] = {}
    try:
        for name in os.listdir(dfd):
            parsed = parse_tag(name)
            if parsed is None:
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid != uid:
                continue
            pid = parsed[0]
            if pid not in alive:
                alive[pid] = pid_alive(pid)
            if alive[pid]:
                continue
            if stat.S_ISSOCK(st.st_mode):
                gone = _unlink(name, dfd)
            elif stat.S_ISREG(st.st_mode):
                gone = _unlink_unless_mapped(name, dfd, uid)
            else:
                continue
            if gone:
                removed.append(os.path.join(directory, name))
    finally:
        os.close(dfd)
    return removed


def _unlink(name: str, dfd: int) -> bool:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        return False
    return True


def _unlink_unless_mapped(name: str, dfd: int, uid: int) -> bool:
    """Unlink a regular file while holding its exclusive flock (so no one maps it)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: someone still has it mapped
            return False
        cur = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if (cur.st_dev, cur.st_ino) != (st.st_dev, st.st_ino):
            return False  # replaced since we opened it
        return _unlink(name, dfd)
    except OSError:
        return False
    finally:
        os.close(fd)


class Registry:
    """The paths this process created (segments, socket files), to remove on close.

    ``cleanup()`` unlinks them all and forgets them; a path that is already gone
    counts as done. A path that cannot be removed stays registered for the next
    ``cleanup()`` and is not reported. Idempotent; no ``atexit``.
    """

    __slots__ = ("_paths",)

    def __init__(self) -> None:
        self._paths: dict[str, None] = {}  # an ordered set

    def add(self, path: str) -> str:
        self._paths[path] = None
        return path

    def discard(self, path: str) -> None:
        self._paths.pop(path, None)

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._paths))

    def cleanup(self) -> list[str]:
        """Unlink every registered path; return those actually removed now."""
        removed: list[str] = []
        for path in list(self._paths):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            else:
                removed.append(path)
            del self._paths[path]
        return removed


__all__ = [
    "DIR_MODE",
    "REPLY",
    "REQUEST",
    "Direction",
    "Registry",
    "new_pool_tag",
    "parse_tag",
    "pid_alive",
    "pool_tag",
    "runtime_dir",
    "segment_name",
    "socket_path",
    "sweep_stale",
]

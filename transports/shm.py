"""Shared-memory payload rings: :class:`Segment` (the memory), :class:`RingPair` (a
worker's two anonymous segments) and :class:`RingAllocator` (the broker's bookkeeping
of which bytes of a segment are in use; it lives in :mod:`.ring` and is re-exported).

Anonymous or named
------------------

A segment is either **anonymous** (:meth:`Segment.anonymous`: a ``memfd`` with no
name in any file system) or **named** (:meth:`Segment.create`: a ``0600`` file in
``/dev/shm``). Anonymous is the default: its memory belongs to the open descriptors
and mappings, so the kernel frees it when the last process holding it exits (a
SIGKILLed broker leaves nothing, plaintext included, once its workers are gone too).
It is sized, reserved in full and then sealed (``F_SEAL_SHRINK | F_SEAL_GROW |
F_SEAL_SEAL``), so no process holding it can truncate it under the others (a
truncated mapping is a ``SIGBUS`` on the next touch). The receiving side,
:meth:`Segment.from_fd`, maps a descriptor only if it is such a sealed memfd of the
expected size. Named segments stay as the fallback where ``memfd_create`` is
unavailable (:func:`memfd_supported`); after a crash they are what
:func:`framecrypt.transports.hygiene.sweep_stale` removes.

Handing the memory to a worker: inheritance, not ``SCM_RIGHTS``. Local workers are
the broker's children (``subprocess.Popen``), so the broker passes the two memfds
with ``Popen(..., close_fds=True, pass_fds=rings.fds())`` and tells the worker their
numbers and size in its CONFIG message; the worker maps them with
:meth:`RingPair.attach`. There is no socket to authenticate and nothing with a
name: the descriptors are ``O_CLOEXEC`` everywhere else, ``pass_fds`` gives them to
exactly that child at ``exec``, and a number in CONFIG that is not one of them is
refused by :meth:`Segment.from_fd` (not a sealed memfd, or too small). ``SCM_RIGHTS``
over a Unix socket is only needed for workers we did not spawn, and none of those
use shared memory (remote workers use tcp, payloads in the messages); it would need
a rendezvous socket of its own, authenticated by peer credentials: the very named,
attackable object this removes. Should such workers appear, :meth:`Segment.from_fd`
already is the receiving side; only the transfer would be new.

How the pool uses them
----------------------

Every worker has two segments (:class:`RingPair`), created by the broker and
mapped by the worker, which refuses memory that is not ours and private (named:
owner and mode; anonymous: sealed memfd of the agreed size). The broker keeps one
:class:`RingAllocator` per segment; the worker never allocates, it only follows the
offsets in the PACKED messages it receives (each segment's ``in_base`` and
``out_base``).

- **Request ring** (broker writes, worker reads). For each batch the broker calls
  ``off = req.alloc(total)`` once (``None`` means the ring is full: backpressure,
  hold the batch or reject, never wait inside the allocator), copies each payload
  in with ``req_seg.view[off + i:off + i + len(data)] = data`` and sends one PACKED
  message over ZeroMQ: per segment the base offset, per frame the length. The worker
  checks that every segment lies in the ring before it reads any (a segment outside
  is a protocol error, not a short slice).
- **Reply ring** (worker writes, broker reads). When the broker dispatches the batch
  it also reserves the replies' space, ``roff = rep.alloc(total_out)`` (the output
  size of every frame is known up front: input ± the format's fixed overhead), and
  puts the reply offsets in the segments (``out_base``). The worker seals or opens
  straight into ``rep_seg.region(roff, rlen)`` (``encrypt_into``/``decrypt_into``) and
  answers with the lengths written. To take both spans or neither, check
  ``req.max_alloc >= total and rep.max_alloc >= total_out`` first (``max_alloc``
  is exact, so both ``alloc`` calls then succeed); there is no undo of an
  allocation, only FIFO release.
- **Release**. When the broker has consumed a batch's results (copied them out, or
  the application is done with the views it was handed), it releases both spans:
  ``req.release(off, total)`` and ``rep.release(roff, total_out)``. Releases are
  FIFO: spans must be released in the order they were allocated, and an
  out-of-order release raises :class:`ReleaseOrderError`. A worker answers its
  batches in order, so this is the natural order; a broker that finishes batches
  out of order keeps a deque of in-flight batches and releases from its head while
  the head is done. Release a request span only once the worker has finished the
  batch (its reply came back), and a reply span only once nobody reads it any more:
  the next batch's bytes go there.
- **Worker loss**. The broker drops the dead worker's rings and makes new ones for
  its replacement (anonymous memory is then freed, the dead worker holds nothing);
  or, keeping them, ``reset()``\\ s both allocators once nothing in them is needed.
- **Shutdown**. The broker closes its segments (and unlinks named ones: ``with``
  does both for the creator); the worker only closes. After a crash, anonymous
  memory is gone with its last holder; named segments are removed by
  :func:`framecrypt.transports.hygiene.sweep_stale`: every mapping of a named segment
  holds a shared ``flock`` on it, so the sweep never removes a segment that some
  process (an orphaned worker, say) still maps.

Memory is bounded by construction: the rings never grow, and ``alloc`` returns
``None`` instead of queueing. The allocator is pure bookkeeping, O(1) per call,
with no per-byte work; segments are reserved in full at creation (``reserve=True``)
so a too-small ``/dev/shm`` (named) or memory cgroup (anonymous: memfds are not
bounded by ``/dev/shm``'s size, only by memory) fails at pool start with
:class:`SegmentError` instead of with ``SIGBUS`` in a worker on first touch.

Views and ``close()``
---------------------

``Segment.view`` is one memoryview of the whole mapping, owned by the segment;
slices of it (``view[a:b]``, :meth:`Segment.region`) are cheap and meant to live
for one batch. :meth:`Segment.close` releases the view it handed out and unmaps.
If a caller still holds a slice at that point, unmapping would leave that slice
pointing at freed memory, so ``close`` does not unmap then: it drops its own
references, emits a :class:`ResourceWarning`, and the mapping goes away when the
last slice is released. ``close`` never raises :class:`BufferError`.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import stat
import warnings
from functools import cache
from types import TracebackType
from typing import Final, Self

from framecrypt.errors import InvalidParameter
from framecrypt.transports.errors import InvalidName, SegmentError, UnsafePath
from framecrypt.transports.ring import RingAllocator

DEFAULT_DIR: Final = "/dev/shm"
"""Where segments live unless told otherwise (tmpfs on Linux)."""

MODE: Final = 0o600
"""The only mode a segment may have: read/write for its owner, nothing for others."""

_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,200}")

# Linux values (fcntl lacks them elsewhere, where there are no memfds either)
_F_GET_SEALS: Final[int] = getattr(fcntl, "F_GET_SEALS", 1034)
_F_ADD_SEALS: Final[int] = getattr(fcntl, "F_ADD_SEALS", 1033)
SEALS: Final[int] = (
    getattr(fcntl, "F_SEAL_SHRINK", 0x2)
    | getattr(fcntl, "F_SEAL_GROW", 0x4)
    | getattr(fcntl, "F_SEAL_SEAL", 0x1)
)
"""The seals every anonymous segment carries: its size is fixed and no one can change
the seals (so no peer can truncate it under a mapping, or make it read-only)."""

_WRITE_SEALS: Final = getattr(fcntl, "F_SEAL_WRITE", 0x8) | 0x10  # 0x10: F_SEAL_FUTURE_WRITE


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid segment name, else raise :class:`InvalidName`.

    Valid: 1–200 characters of ``[A-Za-z0-9._-]`` and not ``.`` or ``..`` (so it is
    a single path component that names a file inside the segment directory).
    """
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None or name in (".", ".."):
        raise InvalidName(f"invalid segment name {name!r}: 1-200 of [A-Za-z0-9._-], no . or ..")
    return name


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise InvalidParameter(f"segment size must be a positive int, got {size!r}")


def _memfd_label(fd: int) -> str:
    """The label a memfd was created with (``/proc/self/fd/N`` -> ``/memfd:LABEL
    (deleted)``), or ``fd<N>`` where that is not readable. For messages only."""
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd{fd}"
    if link.startswith("/memfd:"):
        link = link[len("/memfd:") :].removesuffix(" (deleted)")
    return link if _NAME_RE.fullmatch(link) else f"fd{fd}"


def _lock_shared(fd: int, path: str) -> None:
    """Take a shared ``flock`` on the segment for as long as it is mapped here.

    The lock lives on the open file description, which the mmap's duplicate of
    ``fd`` shares, so it is held until the mapping is gone (also when the process
    dies). :func:`framecrypt.transports.hygiene.sweep_stale` removes a segment
    only if it can take the exclusive lock: never one that is still mapped, even by
    a process it cannot see (another pid namespace) or by an orphaned worker.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError as e:
        raise SegmentError(f"segment {path!r} is being removed") from e


def _reserve(fd: int, size: int, path: str) -> None:
    """Allocate the segment's pages now, so running out of space is an error here and
    not a SIGBUS later. File systems without fallocate stay sparse."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not Linux
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return
        raise SegmentError(f"cannot reserve {size} bytes for segment {path!r}: {e.strerror}") from e


class Segment:
    """A shared-memory segment mapped read/write: anonymous (a sealed memfd) or named
    (a ``0600`` file in ``dir``).

    Make one with :meth:`anonymous` (the broker) and map it elsewhere with
    :meth:`from_fd` (a worker that inherited the descriptor); or, named, with
    :meth:`create` (the broker: it owns and later unlinks it) and :meth:`attach` (a
    worker). Use :attr:`view` / :meth:`region` to read and write. As a context
    manager it closes on exit, and the creator of a named segment also unlinks.

    ``name`` is the file name, or an anonymous segment's label (what
    ``/proc/PID/fd`` shows as ``/memfd:LABEL``); ``path`` is the file's path, ``""``
    for an anonymous segment, which has none.
    """

    __slots__ = ("_closed", "_created", "_dev_ino", "_fd", "_mmap", "_view", "name", "path", "size")

    def __init__(
        self,
        name: str,
        path: str,
        mm: mmap.mmap,
        dev_ino: tuple[int, int],
        *,
        created: bool,
        fd: int | None = None,
    ) -> None:
        # Private: use Segment.anonymous(), from_fd(), create() or attach().
        self.name = name
        self.path = path
        self.size = len(mm)
        self._mmap: mmap.mmap | None = mm
        self._view: memoryview | None = memoryview(mm)
        self._dev_ino = dev_ino
        self._created = created
        self._fd = fd  # anonymous only: the memfd, ours to close
        self._closed = False

    # --- construction ----------------------------------------------------------------

    @classmethod
    def create(cls, name: str, size: int, *, dir: str = DEFAULT_DIR, reserve: bool = True) -> Self:
        """Create a new segment ``dir/name`` of ``size`` bytes (zero-filled), mode ``0600``.

        Fails with :class:`SegmentError` if the name exists (never reuses or follows a
        file someone else put there) or the space cannot be reserved. With
        ``reserve=False`` the file stays sparse (pages are allocated on first touch).
        """
        validate_name(name)
        _check_size(size)
        path = os.path.join(dir, name)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, MODE)
        except FileExistsError as e:
            raise SegmentError(f"segment {path!r} exists already") from e
        except OSError as e:
            raise SegmentError(f"cannot create segment {path!r}: {e.strerror}") from e
        ok = False
        try:
            os.fchmod(fd, MODE)  # the umask may have cleared bits of MODE
            _lock_shared(fd, path)
            os.ftruncate(fd, size)
            if reserve:
                _reserve(fd, size, path)
            st = os.fstat(fd)
            mm = mmap.mmap(fd, size)  # keeps a dup of fd, and with it the lock
            ok = True
        except OSError as e:
            raise SegmentError(f"cannot size or map segment {path!r}: {e.strerror}") from e
        finally:
            os.close(fd)
            if not ok:
                _unlink_quietly(path)
        return cls(name, path, mm, (st.st_dev, st.st_ino), created=True)

    @classmethod
    def anonymous(cls, size: int, *, label: str, reserve: bool = True) -> Self:
        """A new anonymous segment of ``size`` bytes (zero-filled): a memfd, reserved in
        full (unless ``reserve=False``), then sealed with :data:`SEALS`, and mapped.

        ``label`` (the :func:`validate_name` alphabet) only names it in
        ``/proc/PID/fd`` and ``/proc/PID/maps``; nothing is created in any file
        system. The memfd is ``O_CLOEXEC``: a child gets it only through
        ``pass_fds`` (:attr:`fd`). Raises :class:`SegmentError` where memfds are not
        available or the memory cannot be sized or reserved.
        """
        validate_name(label)
        _check_size(size)
        what = f"anonymous segment {label!r}"
        if not hasattr(os, "memfd_create"):  # pragma: no cover - not Linux
            raise SegmentError(f"cannot create {what}: no memfd_create on this system")
        try:
            fd = os.memfd_create(label, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError as e:
            raise SegmentError(f"cannot create {what}: {e.strerror}") from e
        ok = False
        try:
            os.fchmod(fd, MODE)  # /proc/PID/fd/N could reopen it: owner only
            os.ftruncate(fd, size)
            if reserve:
                _reserve(fd, size, what)
            fcntl.fcntl(fd, _F_ADD_SEALS, SEALS)
            st = os.fstat(fd)
            mm = mmap.mmap(fd, size)
            ok = True
        except OSError as e:
            raise SegmentError(f"cannot size, seal or map {what}: {e.strerror}") from e
        finally:
            if not ok:
                os.close(fd)
        return cls(label, "", mm, (st.st_dev, st.st_ino), created=True, fd=fd)

    @classmethod
    def from_fd(cls, fd: int, size: int) -> Self:
        """Map the first ``size`` bytes of the anonymous segment open as ``fd`` (one
        inherited from the broker, say), read/write.

        ``fd`` must be a memfd (a regular file with no name) of at least ``size``
        bytes carrying :data:`SEALS` and no write seal; anything else raises
        :class:`SegmentError` and leaves ``fd`` untouched. The segment works on its
        own duplicate of ``fd`` (``O_CLOEXEC``), closed by :meth:`close`: ``fd``
        itself stays the caller's, open, so a bad or repeated number cannot make two
        owners close one descriptor.
        """
        if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
            raise InvalidParameter(f"fd must be a non-negative int, got {fd!r}")
        _check_size(size)
        what = f"fd {fd}"
        try:
            st = os.fstat(fd)
        except OSError as e:
            raise SegmentError(f"{what} is not an open descriptor: {e.strerror}") from e
        if not stat.S_ISREG(st.st_mode):
            raise SegmentError(f"{what} is not a memfd (not a regular file)")
        if st.st_nlink != 0:
            raise SegmentError(f"{what} is not a memfd (it has a name in a file system)")
        try:
            seals = fcntl.fcntl(fd, _F_GET_SEALS)
        except OSError as e:
            raise SegmentError(f"{what} is not a memfd (it cannot be sealed)") from e
        if seals & SEALS != SEALS:
            raise SegmentError(
                f"{what} is not a sealed memfd: seals 0x{seals:x}, need 0x{SEALS:x} "
                "(a peer could resize it under our mapping)"
            )
        if seals & _WRITE_SEALS:
            raise SegmentError(f"{what} is sealed against writing (seals 0x{seals:x})")
        if st.st_size < size:
            raise SegmentError(f"{what} has {st.st_size} bytes, expected at least {size}")
        try:
            own = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError as e:
            raise SegmentError(f"cannot duplicate {what}: {e.strerror}") from e
        try:
            mm = mmap.mmap(own, size)
        except OSError as e:
            os.close(own)
            raise SegmentError(f"cannot map {what}: {e.strerror}") from e
        return cls(_memfd_label(own), "", mm, (st.st_dev, st.st_ino), created=False, fd=own)

    @classmethod
    def attach(cls, name: str, *, dir: str = DEFAULT_DIR, size: int | None = None) -> Self:
        """Map the existing segment ``dir/name`` read/write.

        Raises :class:`UnsafePath` unless it is a regular file (not a symlink) owned
        by our effective uid with mode exactly ``0600``; :class:`SegmentError` if it
        is missing, empty, or not ``size`` bytes when ``size`` is given.
        """
        validate_name(name)
        path = os.path.join(dir, name)
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(path, flags)
        except FileNotFoundError as e:
            raise SegmentError(f"no segment {path!r}") from e
        except PermissionError as e:
            raise UnsafePath(path, "permission denied (not ours or not 0600)") from e
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafePath(path, "is a symlink") from e
            raise SegmentError(f"cannot open segment {path!r}: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(path, "not a regular file")
            if st.st_uid != os.geteuid():
                raise UnsafePath(path, f"owned by uid {st.st_uid}, not by us")
            if stat.S_IMODE(st.st_mode) != MODE:
                raise UnsafePath(path, f"mode 0o{stat.S_IMODE(st.st_mode):o}, not 0o600")
            if st.st_size == 0:
                raise SegmentError(f"segment {path!r} is empty")
            if size is not None and st.st_size != size:
                raise SegmentError(f"segment {path!r} has {st.st_size} bytes, expected {size}")
            _lock_shared(fd, path)
            try:
                mm = mmap.mmap(fd, st.st_size)  # keeps a dup of fd, and with it the lock
            except OSError as e:
                raise SegmentError(f"cannot map segment {path!r}: {e.strerror}") from e
        finally:
            os.close(fd)
        return cls(name, path, mm, (st.st_dev, st.st_ino), created=False)

    # --- access ----------------------------------------------------------------------

    @property
    def view(self) -> memoryview:
        """A writable memoryview of the whole segment (the same object every time).
        Slices of it are for short-lived use; see the module notes on ``close``."""
        view = self._view
        if view is None:
            raise SegmentError(f"segment {self.name!r} is closed")
        return view

    def region(self, offset: int, n: int) -> memoryview:
        """``view[offset:offset + n]``, but a range outside the segment raises
        :class:`SegmentError` instead of silently returning a shorter slice.
        Use it for offsets that came from a message."""
        if offset < 0 or n < 0 or offset + n > self.size:
            raise SegmentError(
                f"region [{offset}, {offset}+{n}) outside segment {self.name!r} of {self.size}"
            )
        return self.view[offset : offset + n]

    @property
    def closed(self) -> bool:
        return self._closed

    def same_memory(self, other: Segment) -> bool:
        """Whether ``other`` maps the same file or memfd (same device and inode)."""
        return self._dev_ino == other._dev_ino

    @property
    def named(self) -> bool:
        """True for a named segment (a file), False for an anonymous one (a memfd)."""
        return bool(self.path)

    @property
    def fd(self) -> int:
        """The memfd of an anonymous segment (for ``pass_fds``; it stays ours: close
        it with :meth:`close`). A named segment keeps no descriptor: :class:`SegmentError`."""
        if self._closed:
            raise SegmentError(f"segment {self.name!r} is closed")
        if self._fd is None:
            raise SegmentError(f"named segment {self.name!r} has no descriptor: attach it by name")
        return self._fd

    @property
    def created(self) -> bool:
        """True for the process that created the segment (it is the one to unlink it)."""
        return self._created

    # --- teardown --------------------------------------------------------------------

    def close(self) -> None:
        """Release :attr:`view`, unmap, and close an anonymous segment's memfd.
        Idempotent; never raises ``BufferError``.

        If slices of the view are still alive elsewhere, the mapping cannot be
        unmapped safely: this drops the segment's references, warns with
        :class:`ResourceWarning`, and the OS mapping is freed when the last slice
        is released. The segment is closed either way.
        """
        if self._closed:
            return
        self._closed = True
        view, mm = self._view, self._mmap
        self._view = self._mmap = None
        fd, self._fd = self._fd, None
        assert view is not None and mm is not None
        try:
            view.release()
            mm.close()
        except BufferError:
            warnings.warn(
                f"segment {self.name!r} closed while views into it are alive; "
                "it stays mapped until they are released",
                ResourceWarning,
                stacklevel=2,
            )
        finally:
            if fd is not None:
                os.close(fd)  # the mapping, while it lasts, holds the memory by itself

    def unlink(self) -> bool:
        """Remove the segment's name, if it still names *this* segment's file (a file
        put there since is left alone). Existing mappings stay valid. Idempotent;
        returns whether it removed something (never, for an anonymous segment)."""
        if not self.path:
            return False
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if (st.st_dev, st.st_ino) != self._dev_ino:
            return False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if self._created:
            self.unlink()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        kind = "anonymous, " if not self.path else ""
        return f"Segment({self.name!r}, size={self.size}, {kind}{state})"


@cache
def memfd_supported() -> bool:
    """Whether anonymous segments work here (``memfd_create`` and sealing: Linux >= 3.17,
    not blocked by a seccomp filter). Probed once per process with a one-page
    segment; where False, use named segments (:meth:`Segment.create`)."""
    try:
        with Segment.anonymous(mmap.PAGESIZE, label="fc-probe", reserve=False):
            return True
    except SegmentError:
        return False


__all__ = [
    "DEFAULT_DIR",
    "MODE",
    "SEALS",
    "RingAllocator",
    "Segment",
    "memfd_supported",
    "validate_name",
]

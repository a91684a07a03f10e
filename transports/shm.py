"""Shared-memory payload rings: :class:`Segment` (the memory) and :class:`RingAllocator`
(the broker's bookkeeping of which bytes of it are in use).

How the pool uses them
----------------------

Every worker has two segments, both created by the broker with
:meth:`Segment.create` (file ``0600`` in ``/dev/shm``, named by
:mod:`framecrypt.transports.hygiene`) and attached by the worker with
:meth:`Segment.attach`, which refuses a segment that is not ours and private.
The broker keeps one :class:`RingAllocator` per segment; the worker never
allocates, it only follows the offsets in the descriptors it receives.

- **Request ring** (broker writes, worker reads). For each batch the broker calls
  ``off = req.alloc(total)`` once (``None`` means the ring is full: backpressure,
  hold the batch or reject, never wait inside the allocator), copies each payload
  in with ``req_seg.view[off + i:off + i + len(data)] = data`` and sends the
  descriptors ``(offset, length)`` over ZeroMQ. The worker reads
  ``req_seg.region(offset, length)`` (bounds-checked: a bad descriptor is a typed
  error, not a short slice).
- **Reply ring** (worker writes, broker reads). When the broker dispatches the batch
  it also reserves the replies' space, ``roff = rep.alloc(total_out)`` (the output
  size of every frame is known up front: input ± the format's fixed overhead), and
  puts the reply offsets in the descriptors. The worker seals or opens straight
  into ``rep_seg.region(roff, rlen)`` (``encrypt_into``/``decrypt_into``) and
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
- **Worker loss**. The segments outlive the worker. A replacement worker attaches the
  same segments and can be sent the same descriptors again (the spans are still
  allocated and hold the payloads); or the broker ``reset()``\\ s both allocators once
  nothing in them is needed.
- **Shutdown**. The broker closes and unlinks its segments (``with`` does both for
  the creator); the worker only closes. After a crash,
  :func:`framecrypt.transports.hygiene.sweep_stale` removes what is left: every
  mapping holds a shared ``flock`` on its segment, so the sweep never removes a
  segment that some process (an orphaned worker, say) still maps.

Memory is bounded by construction: the rings never grow, and ``alloc`` returns
``None`` instead of queueing. The allocator is pure bookkeeping, O(1) per call,
with no per-byte work; segments are reserved in full at creation (``reserve=True``)
so a too-small ``/dev/shm`` fails at pool start instead of with ``SIGBUS`` in a
worker on first touch.

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
from collections import deque
from types import TracebackType
from typing import Final, Self

from framecrypt.errors import InvalidParameter
from framecrypt.transports.errors import (
    FrameTooLarge,
    InvalidName,
    ReleaseOrderError,
    SegmentError,
    UnsafePath,
)

DEFAULT_DIR: Final = "/dev/shm"
"""Where segments live unless told otherwise (tmpfs on Linux)."""

MODE: Final = 0o600
"""The only mode a segment may have: read/write for its owner, nothing for others."""

_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,200}")


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
    """A named shared-memory segment: a ``0600`` file in ``dir`` mapped read/write.

    Make one with :meth:`create` (the broker: it owns and later unlinks it) or
    :meth:`attach` (a worker). Use :attr:`view` / :meth:`region` to read and write.
    As a context manager it closes on exit, and the creator also unlinks.
    """

    __slots__ = ("_closed", "_created", "_dev_ino", "_mmap", "_view", "name", "path", "size")

    def __init__(
        self, name: str, path: str, mm: mmap.mmap, dev_ino: tuple[int, int], *, created: bool
    ) -> None:
        # Private: use Segment.create() or Segment.attach().
        self.name = name
        self.path = path
        self.size = len(mm)
        self._mmap: mmap.mmap | None = mm
        self._view: memoryview | None = memoryview(mm)
        self._dev_ino = dev_ino
        self._created = created
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
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise InvalidParameter(f"segment size must be a positive int, got {size!r}")
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

    @property
    def created(self) -> bool:
        """True for the process that created the segment (it is the one to unlink it)."""
        return self._created

    # --- teardown --------------------------------------------------------------------

    def close(self) -> None:
        """Release :attr:`view` and unmap. Idempotent; never raises ``BufferError``.

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

    def unlink(self) -> bool:
        """Remove the segment's name, if it still names *this* segment's file (a file
        put there since is left alone). Existing mappings stay valid. Idempotent;
        returns whether it removed something."""
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
        return f"Segment({self.name!r}, size={self.size}, {state})"


class _Span:
    """One allocation of a :class:`RingAllocator`."""

    __slots__ = ("cost", "n", "offset", "prev_head", "prev_last", "skipped")

    def __init__(
        self, offset: int, n: int, cost: int, skipped: int, prev_head: int, prev_last: _Span | None
    ) -> None:
        self.offset = offset
        self.n = n
        # bytes freed when released: n rounded up to align, plus a skipped tail that
        # follows it (added when a later allocation wraps); -1 once released
        self.cost = cost
        self.skipped = skipped  # the tail this allocation skipped (charged to prev_last)
        self.prev_head = prev_head  # for cancel()
        self.prev_last = prev_last


class RingAllocator:
    """FIFO allocator of byte ranges in a ring of ``capacity`` bytes (broker side).

    ``alloc(n)`` returns the offset of ``n`` contiguous bytes, starting on a multiple
    of ``align``: right after the newest allocation if it fits before the end,
    else at 0 if it fits before the oldest live allocation (the skipped tail
    counts as used until the allocations before the wrap are released), else
    ``None`` (full: backpressure). A request larger than the ring raises
    :class:`FrameTooLarge`. Allocations are released oldest first, with
    ``release(offset, n)`` (checked) or ``release_oldest()``; ``cancel(offset, n)``
    undoes the newest one. When nothing is in use the next allocation starts at 0
    again, so an empty ring always has its whole capacity in one piece.

    ``used`` counts alignment padding and skipped tails, so ``used + free ==
    capacity`` and ``used`` returns to 0 when everything is released. ``alloc(0)``
    is allowed (a batch with no payload bytes): it takes no space, always succeeds
    and must be released in its turn like any other allocation.

    Every call is O(1) and does no per-byte work.
    """

    __slots__ = ("_align", "_capacity", "_head", "_last", "_mask", "_spans", "_used")

    def __init__(self, capacity: int, *, align: int = 64) -> None:
        if not isinstance(align, int) or isinstance(align, bool) or align < 1 or align & align - 1:
            raise InvalidParameter(f"align must be a power of two >= 1, got {align!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise InvalidParameter(f"ring capacity must be a positive int, got {capacity!r}")
        if capacity % align:
            raise InvalidParameter(f"ring capacity {capacity} is not a multiple of align {align}")
        self._capacity = capacity
        self._align = align
        self._mask = align - 1
        self._head = 0  # where the next allocation would start
        self._used = 0  # bytes from the oldest live allocation to head, gaps included
        # live allocations, oldest first
        self._spans: deque[_Span] = deque()
        self._last: _Span | None = None  # the newest live span with bytes

    def alloc(self, n: int) -> int | None:
        """Offset of ``n`` contiguous bytes, or ``None`` if they do not fit now.

        Raises :class:`FrameTooLarge` if ``n > capacity`` (it never could fit) and
        :class:`~framecrypt.errors.InvalidParameter` if ``n < 0``.
        """
        cap = self._capacity
        if n > cap:
            raise FrameTooLarge(n, cap)
        if n < 0:
            raise InvalidParameter(f"cannot allocate {n} bytes")
        need = (n + self._mask) & ~self._mask
        used = self._used
        head = self._head
        skipped = 0
        if used == 0:  # empty: start over at 0, the whole ring is free in one piece
            off = 0
        else:
            tail = (head - used) % cap
            if head > tail:  # live is [tail, head); free is [head, cap) and [0, tail)
                if cap - head >= need:
                    off = head
                elif tail >= need:
                    # wrap: the skipped [head, cap) is freed with the newest allocation
                    # that has bytes (it lies right after it), so it is free again as
                    # soon as everything before this allocation is released
                    last = self._last
                    assert last is not None  # used > 0
                    skipped = cap - head
                    last.cost += skipped
                    used += skipped
                    off = 0
                else:
                    return None
            elif tail - head >= need:  # live wraps (or fills the ring); free is [head, tail)
                off = head
            else:
                return None
        span = _Span(off, n, need, skipped, head, self._last)
        self._spans.append(span)
        if need:
            self._last = span
            self._head = (off + need) % cap
        self._used = used + need
        return off

    def release(self, offset: int, n: int) -> None:
        """Release the oldest allocation, which must be ``(offset, n)`` as allocated.
        Anything else raises :class:`ReleaseOrderError` and changes nothing."""
        spans = self._spans
        if not spans:
            raise ReleaseOrderError(f"release({offset}, {n}) with nothing allocated")
        span = spans[0]
        if span.offset != offset or span.n != n:
            raise ReleaseOrderError(
                f"release({offset}, {n}) is not the oldest allocation ({span.offset}, {span.n})"
            )
        self._pop()

    def release_oldest(self) -> tuple[int, int]:
        """Release the oldest allocation and return its ``(offset, n)``.
        Raises :class:`ReleaseOrderError` if nothing is allocated."""
        if not self._spans:
            raise ReleaseOrderError("release_oldest() with nothing allocated")
        span = self._pop()
        return span.offset, span.n

    def _pop(self) -> _Span:
        span = self._spans.popleft()
        self._used -= span.cost
        span.cost = -1  # released (see cancel)
        span.prev_last = None  # no chain of released spans
        if span is self._last:  # it was the newest with bytes: nothing with bytes is left
            self._last = None
        return span

    def cancel(self, offset: int, n: int) -> None:
        """Undo the *newest* allocation, which must be ``(offset, n)``: the ring is as
        if it had never been made (e.g. the reply ring had no room for the batch whose
        request span was just taken, or the batch could not be sent). Anything else
        raises :class:`ReleaseOrderError` and changes nothing."""
        spans = self._spans
        if not spans:
            raise ReleaseOrderError(f"cancel({offset}, {n}) with nothing allocated")
        span = spans[-1]
        if span.offset != offset or span.n != n:
            raise ReleaseOrderError(
                f"cancel({offset}, {n}) is not the newest allocation ({span.offset}, {span.n})"
            )
        spans.pop()
        self._used -= span.cost
        prev = span.prev_last
        if prev is not None and prev.cost < 0:
            prev = None  # released since: it took the skipped tail with it
        if span.skipped and prev is not None:
            prev.cost -= span.skipped
            self._used -= span.skipped
        if span is self._last:
            self._last = prev
        self._head = span.prev_head
        span.cost = -1
        span.prev_last = None

    def oldest(self) -> tuple[int, int] | None:
        """``(offset, n)`` of the allocation the next release must name, or ``None``."""
        if not self._spans:
            return None
        span = self._spans[0]
        return span.offset, span.n

    def reset(self) -> None:
        """Forget every allocation (e.g. after the worker reading this ring was lost
        and nothing in the ring is needed any more)."""
        self._spans.clear()
        self._last = None
        self._head = 0
        self._used = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def align(self) -> int:
        return self._align

    @property
    def used(self) -> int:
        """Bytes not available: live allocations plus their padding and skipped tails."""
        return self._used

    @property
    def free(self) -> int:
        """``capacity - used``: free bytes in total, not necessarily contiguous."""
        return self._capacity - self._used

    @property
    def max_alloc(self) -> int:
        """The largest ``n`` that ``alloc(n)`` would satisfy now (a multiple of align)."""
        cap, used = self._capacity, self._used
        if used == 0:
            return cap
        head = self._head
        tail = (head - used) % cap
        if head > tail:
            return max(cap - head, tail)
        return tail - head

    @property
    def outstanding(self) -> int:
        """Number of allocations not yet released."""
        return len(self._spans)

    def __repr__(self) -> str:
        return (
            f"RingAllocator(capacity={self._capacity}, align={self._align}, "
            f"used={self._used}, outstanding={len(self._spans)})"
        )


__all__ = ["DEFAULT_DIR", "MODE", "RingAllocator", "Segment", "validate_name"]

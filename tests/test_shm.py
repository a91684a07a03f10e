"""Shared-memory segments, the FIFO ring allocator, and the hygiene of pool resources
(names, the private runtime directory, crash sweep, registry).

Real processes are used where the property is about processes: a second process
attaching a segment, and a SIGKILLed broker whose files must be swept. Everything
else works in tmp_path; one test checks /dev/shm itself.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import socket
import stat
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from framecrypt.errors import FramecryptError, InvalidParameter
from framecrypt.transports.errors import (
    FrameTooLarge,
    InvalidName,
    ReleaseOrderError,
    RingError,
    SegmentError,
    TransportError,
    UnsafePath,
)
from framecrypt.transports.hygiene import (
    Registry,
    new_pool_tag,
    parse_tag,
    pid_alive,
    pool_tag,
    runtime_dir,
    segment_name,
    socket_path,
    sweep_stale,
)
from framecrypt.transports.shm import RingAllocator, Segment, validate_name

ROOT = os.geteuid() == 0
OTHER_UID = 65534  # nobody
needs_root = pytest.mark.skipif(not ROOT, reason="needs root to make files owned by another uid")
SUBPROCESS_TIMEOUT = 60


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    assert proc.wait(timeout=SUBPROCESS_TIMEOUT) == 0  # reaped, so not even a zombie
    assert not pid_alive(proc.pid)
    return proc.pid


def mapped_paths() -> str:
    with open("/proc/self/maps") as f:
        return f.read()


# ======================================================================================
# Segment
# ======================================================================================


def test_create_attach_share_memory(tmp_path: Path) -> None:
    with (
        Segment.create("seg", 8192, dir=str(tmp_path)) as a,
        Segment.attach("seg", dir=str(tmp_path)) as b,
    ):
        assert a.size == b.size == len(a.view) == len(b.view) == 8192
        assert a.created and not b.created
        assert bytes(a.view[:16]) == bytes(16)  # zero-filled
        a.view[100:105] = b"hello"
        assert bytes(b.view[100:105]) == b"hello"
        b.region(8190, 2)[:] = b"zz"
        assert bytes(a.view[-2:]) == b"zz"
        assert a.path == str(tmp_path / "seg")
        assert "seg" in repr(a) and "8192" in repr(a)
    assert not (tmp_path / "seg").exists()  # the creator's `with` unlinked it


def test_segment_is_private_and_ours(tmp_path: Path) -> None:
    with umask(0o277), Segment.create("priv", 4096, dir=str(tmp_path)):
        st_ = os.lstat(tmp_path / "priv")
        assert stat.S_ISREG(st_.st_mode)
        assert stat.S_IMODE(st_.st_mode) == 0o600  # exact, whatever the umask
        assert st_.st_uid == os.geteuid()
    with umask(0), Segment.create("priv2", 4096, dir=str(tmp_path)):
        assert stat.S_IMODE(os.lstat(tmp_path / "priv2").st_mode) == 0o600


def test_create_refuses_existing_name_and_symlinks(tmp_path: Path) -> None:
    (tmp_path / "taken").write_bytes(b"x")
    with pytest.raises(SegmentError, match="exists"):
        Segment.create("taken", 4096, dir=str(tmp_path))
    assert (tmp_path / "taken").read_bytes() == b"x"  # untouched, not truncated
    target = tmp_path / "target"
    (tmp_path / "link").symlink_to(target)  # dangling: O_CREAT would create the target
    with pytest.raises(SegmentError):
        Segment.create("link", 4096, dir=str(tmp_path))
    assert not target.exists()


def test_create_in_missing_dir_is_a_segment_error(tmp_path: Path) -> None:
    with pytest.raises(SegmentError):
        Segment.create("x", 4096, dir=str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "/abs", "a b", "é", "a\0b", "x" * 201, "a\nb", "*"]
)
def test_invalid_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidName):
        Segment.create(name, 4096, dir=str(tmp_path))
    with pytest.raises(InvalidName):
        Segment.attach(name, dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_valid_names() -> None:
    for name in ["a", "x" * 200, "fc-1-ab.w0_req", "...", "-"]:
        assert validate_name(name) == name
    assert isinstance(InvalidName("x"), ValueError)


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_invalid_sizes(tmp_path: Path, size: object) -> None:
    with pytest.raises(InvalidParameter):
        Segment.create("s", size, dir=str(tmp_path))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_attach_checks_mode_type_owner_and_size(tmp_path: Path) -> None:
    d = str(tmp_path)
    with Segment.create("s", 4096, dir=d):
        os.chmod(tmp_path / "s", 0o644)
        with pytest.raises(UnsafePath, match="mode 0o644"):
            Segment.attach("s", dir=d)
        os.chmod(tmp_path / "s", 0o600)
        with pytest.raises(SegmentError, match="expected 8192"):
            Segment.attach("s", dir=d, size=8192)
        with Segment.attach("s", dir=d, size=4096):
            pass
        (tmp_path / "ln").symlink_to(tmp_path / "s")
        with pytest.raises(UnsafePath, match="symlink"):
            Segment.attach("ln", dir=d)
    (tmp_path / "dir").mkdir(mode=0o600)
    with pytest.raises((UnsafePath, SegmentError)):
        Segment.attach("dir", dir=d)
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(UnsafePath, match="regular"):
        Segment.attach("fifo", dir=d)  # does not block: O_NONBLOCK
    fd = os.open(tmp_path / "empty", os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    with pytest.raises(SegmentError, match="empty"):
        Segment.attach("empty", dir=d)
    with pytest.raises(SegmentError, match="no segment"):
        Segment.attach("missing", dir=d)


def test_attach_refuses_a_segment_of_another_uid_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Segment.create("s", 4096, dir=str(tmp_path)):
        real = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real + 1)
        with pytest.raises(UnsafePath, match="owned by uid"):
            Segment.attach("s", dir=str(tmp_path))


@needs_root
def test_attach_refuses_a_segment_of_another_uid(tmp_path: Path) -> None:
    with Segment.create("s", 4096, dir=str(tmp_path)):
        os.chown(tmp_path / "s", OTHER_UID, OTHER_UID)
        with pytest.raises(UnsafePath, match=f"owned by uid {OTHER_UID}"):
            Segment.attach("s", dir=str(tmp_path))


def test_region_is_bounds_checked(tmp_path: Path) -> None:
    with Segment.create("s", 4096, dir=str(tmp_path)) as seg:
        assert len(seg.region(0, 4096)) == 4096
        assert len(seg.region(4096, 0)) == 0
        for off, n in [(-1, 1), (0, -1), (4000, 97), (4097, 0), (0, 1 << 70)]:
            with pytest.raises(SegmentError, match="outside"):
                seg.region(off, n)


def test_close_releases_the_view_and_unmaps(tmp_path: Path) -> None:
    seg = Segment.create("s", 4096, dir=str(tmp_path))
    view = seg.view
    assert seg.view is view
    seg.view[0:4] = b"abcd"  # temporaries are released at once
    _ = bytes(seg.region(0, 4))
    seg.close()
    assert seg.closed
    with pytest.raises(ValueError):  # the released root view is unusable
        view[0]
    with pytest.raises(SegmentError, match="closed"):
        _ = seg.view
    with pytest.raises(SegmentError, match="closed"):
        seg.region(0, 1)
    seg.close()  # idempotent
    if os.path.exists("/proc/self/maps"):
        assert seg.path not in mapped_paths()
    assert seg.unlink() is True
    assert seg.unlink() is False  # idempotent


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_close_with_a_live_slice_defers_unmapping_without_error(tmp_path: Path) -> None:
    seg = Segment.create("s", 4096, dir=str(tmp_path))
    kept = seg.view[10:20]
    kept[:] = b"0123456789"
    with pytest.warns(ResourceWarning, match="views into it are alive"):
        seg.close()  # no BufferError
    assert seg.closed
    assert bytes(kept) == b"0123456789"  # still mapped: no dangling memory
    assert seg.path in mapped_paths()
    kept.release()
    assert seg.path not in mapped_paths()  # gone with the last view
    seg.unlink()


def test_close_with_an_export_of_the_root_view(tmp_path: Path) -> None:
    seg = Segment.create("s", 4096, dir=str(tmp_path))
    exported = memoryview(seg.view).cast("B")  # a view of the view
    with pytest.warns(ResourceWarning):
        seg.close()
    exported[0] = 7
    exported.release()
    seg.unlink()


def test_attach_side_context_does_not_unlink(tmp_path: Path) -> None:
    with Segment.create("s", 4096, dir=str(tmp_path)):
        with Segment.attach("s", dir=str(tmp_path)) as b:
            b.view[0] = 1
        assert (tmp_path / "s").exists()
    assert not (tmp_path / "s").exists()


def test_unlink_leaves_a_file_that_replaced_ours(tmp_path: Path) -> None:
    seg = Segment.create("s", 4096, dir=str(tmp_path))
    os.unlink(tmp_path / "s")
    (tmp_path / "s").write_bytes(b"someone else's")
    assert seg.unlink() is False
    assert (tmp_path / "s").read_bytes() == b"someone else's"
    seg.close()


def test_unmapped_segment_survives_unlink(tmp_path: Path) -> None:
    with Segment.create("s", 4096, dir=str(tmp_path)) as seg:
        seg.unlink()
        seg.view[0:3] = b"abc"  # the mapping stays valid after the name is gone
        assert bytes(seg.view[0:3]) == b"abc"


def test_reserve_failure_is_a_segment_error_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def no_space(fd: int, off: int, n: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(SegmentError, match="reserve"):
        Segment.create("s", 4096, dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    with Segment.create("s", 4096, dir=str(tmp_path), reserve=False) as seg:
        seg.view[4095] = 1

    def unsupported(fd: int, off: int, n: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    with Segment.create("s", 4096, dir=str(tmp_path)) as seg:  # falls back to sparse
        seg.view[4095] = 1


def test_reserve_allocates_blocks(tmp_path: Path) -> None:
    with Segment.create("s", 1 << 20, dir=str(tmp_path)) as seg:
        assert os.stat(seg.path).st_blocks * 512 >= 1 << 20
    with Segment.create("t", 1 << 20, dir=str(tmp_path), reserve=False) as seg:
        assert os.stat(seg.path).st_size == 1 << 20


CHILD_ATTACH = r"""
import sys
from framecrypt.transports.shm import Segment
name, directory, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Segment.attach(name, dir=directory, size=size) as seg:
    assert bytes(seg.region(0, 5)) == b"hello", bytes(seg.region(0, 5))
    seg.view[100:104] = b"PONG"
    seg.region(size - 3, 3)[:] = b"end"
print("attached", seg.created)
"""


@pytest.mark.timeout(SUBPROCESS_TIMEOUT * 2)
def test_second_process_attaches_and_writes(tmp_path: Path) -> None:
    size = 1 << 16
    with Segment.create("xproc", size, dir=str(tmp_path)) as seg:
        seg.view[0:5] = b"hello"
        out = subprocess.run(
            [sys.executable, "-c", CHILD_ATTACH, "xproc", str(tmp_path), str(size)],
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "attached False"
        assert bytes(seg.view[100:104]) == b"PONG"
        assert bytes(seg.view[size - 3 :]) == b"end"
        assert seg.path.startswith(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_dev_shm_works() -> None:
    name = segment_name(new_pool_tag(), 0, "req")
    seg = Segment.create(name, 1 << 20)
    try:
        assert seg.path == f"/dev/shm/{name}"
        st_ = os.lstat(seg.path)
        assert stat.S_IMODE(st_.st_mode) == 0o600 and st_.st_uid == os.geteuid()
        with Segment.attach(name, size=1 << 20) as other:
            seg.view[-4:] = b"tail"
            assert bytes(other.view[-4:]) == b"tail"
    finally:
        seg.close()
        seg.unlink()
    assert not os.path.exists(f"/dev/shm/{name}")


# ======================================================================================
# RingAllocator
# ======================================================================================


def test_ring_basic_sequence_and_alignment() -> None:
    r = RingAllocator(1024, align=64)
    assert (r.capacity, r.align, r.used, r.free, r.outstanding) == (1024, 64, 0, 1024, 0)
    assert r.alloc(10) == 0
    assert r.alloc(64) == 64
    assert r.alloc(65) == 128
    assert r.used == 64 + 64 + 128 and r.free == 1024 - 256
    assert r.outstanding == 3 and r.oldest() == (0, 10)
    r.release(0, 10)
    assert r.release_oldest() == (64, 64)
    r.release(128, 65)
    assert (r.used, r.outstanding, r.oldest()) == (0, 0, None)
    assert "capacity=1024" in repr(r)


def test_ring_full_returns_none_without_changing_state() -> None:
    r = RingAllocator(256, align=64)
    assert [r.alloc(64) for _ in range(4)] == [0, 64, 128, 192]
    assert r.used == 256 and r.free == 0 and r.max_alloc == 0
    assert r.alloc(1) is None
    assert r.alloc(256) is None  # fits the ring, not now: backpressure, not an error
    assert (r.used, r.outstanding) == (256, 4)


def test_ring_too_large_is_an_error_distinct_from_full() -> None:
    r = RingAllocator(256, align=64)
    with pytest.raises(FrameTooLarge) as e:
        r.alloc(257)
    assert (e.value.size, e.value.capacity) == (257, 256)
    assert isinstance(e.value, RingError | TransportError | FramecryptError | ValueError)
    assert r.used == 0 and r.outstanding == 0
    assert r.alloc(256) == 0  # exactly the capacity fits an empty ring
    with pytest.raises(FrameTooLarge):
        r.alloc(257)  # also when full: too large wins over full
    assert r.alloc(256) is None
    r.release(0, 256)
    with pytest.raises(InvalidParameter):
        r.alloc(-1)


def test_ring_wraps_when_the_tail_does_not_fit() -> None:
    r = RingAllocator(1024, align=64)
    a = r.alloc(512)
    b = r.alloc(384)  # [512, 896); 128 bytes left at the end
    assert (a, b) == (0, 512)
    r.release(0, 512)  # live: [512, 896)
    assert r.max_alloc == 512  # max(tail end 128, front 512)
    c = r.alloc(200)  # 256 aligned: does not fit in [896, 1024) -> wraps to 0
    assert c == 0
    assert r.used == 384 + 128 + 256  # the skipped tail counts as used
    assert r.free == 1024 - r.used
    r.release(512, 384)  # the skipped tail goes free with the allocation before it
    assert r.used == 256
    assert r.max_alloc == 768  # [256, 1024) is one piece again
    assert r.alloc(768) == 256
    r.release(0, 200)
    r.release_oldest()
    assert r.used == 0


def test_ring_wrap_is_refused_when_the_front_is_busy() -> None:
    r = RingAllocator(1024, align=64)
    r.alloc(256)  # [0, 256)
    r.alloc(640)  # [256, 896)
    r.release_oldest()  # live [256, 896); free [896, 1024) and [0, 256)
    assert r.alloc(320) is None  # neither the end (128) nor the front (256) holds 320
    assert r.alloc(256) == 0  # the front does
    assert r.alloc(64) is None  # wrapped: free is [256, 256) now: nothing
    assert r.max_alloc == 0


def test_ring_exact_fit_at_the_end_then_the_front() -> None:
    r = RingAllocator(512, align=64)
    r.alloc(256)  # [0, 256)
    r.alloc(256)  # [256, 512): the head is back at 0
    r.release_oldest()  # live [256, 512)
    assert r.max_alloc == 256
    assert r.alloc(256) == 0  # no skipped bytes
    assert r.used == 512
    assert r.alloc(0) == 256  # zero-size still fits a full ring
    r.release(256, 256)
    r.release(0, 256)
    r.release(256, 0)
    assert r.used == 0


def test_ring_restarts_at_zero_when_empty() -> None:
    r = RingAllocator(1024, align=64)
    r.alloc(300)
    r.alloc(300)
    r.release_oldest()
    r.release_oldest()
    assert r.max_alloc == 1024
    assert r.alloc(1024) == 0  # the whole ring in one piece, not split at the old head


def test_ring_zero_size() -> None:
    r = RingAllocator(256, align=64)
    assert r.alloc(0) == 0
    assert r.used == 0 and r.outstanding == 1
    assert r.alloc(64) == 0  # the zero-size span takes no room
    assert r.alloc(0) == 64
    with pytest.raises(ReleaseOrderError):
        r.release(0, 64)  # (0, 0) is oldest: the sizes tell them apart
    r.release(0, 0)
    r.release(0, 64)
    r.release(64, 0)
    assert (r.used, r.outstanding) == (0, 0)


def test_ring_release_order_is_enforced() -> None:
    r = RingAllocator(1024, align=64)
    with pytest.raises(ReleaseOrderError, match="nothing"):
        r.release(0, 1)
    with pytest.raises(ReleaseOrderError, match="nothing"):
        r.release_oldest()
    a, b = r.alloc(100), r.alloc(100)
    assert (a, b) == (0, 128)
    with pytest.raises(ReleaseOrderError, match="not the oldest"):
        r.release(128, 100)  # newest first
    with pytest.raises(ReleaseOrderError):
        r.release(0, 99)  # wrong size
    with pytest.raises(ReleaseOrderError):
        r.release(64, 100)  # not an allocation at all
    assert (r.used, r.outstanding, r.oldest()) == (256, 2, (0, 100))  # unchanged
    r.release(0, 100)
    r.release(128, 100)


def test_ring_cancel_undoes_the_newest() -> None:
    r = RingAllocator(1024, align=64)
    with pytest.raises(ReleaseOrderError, match="nothing"):
        r.cancel(0, 1)
    a = r.alloc(100)
    b = r.alloc(100)
    assert (a, b) == (0, 128)
    with pytest.raises(ReleaseOrderError, match="not the newest"):
        r.cancel(0, 100)
    with pytest.raises(ReleaseOrderError):
        r.cancel(128, 99)
    r.cancel(128, 100)
    assert (r.used, r.outstanding) == (128, 1)
    assert r.alloc(500) == 128  # the same place again
    r.cancel(128, 500)
    r.cancel(0, 100)
    assert (r.used, r.outstanding, r.max_alloc) == (0, 0, 1024)


def test_ring_cancel_a_wrap_gives_the_skipped_tail_back() -> None:
    r = RingAllocator(1024, align=64)
    r.alloc(512)  # [0, 512)
    r.alloc(384)  # [512, 896)
    r.release(0, 512)
    before = (r.used, r.max_alloc)
    assert r.alloc(200) == 0  # wraps, skipping [896, 1024)
    assert r.used == 384 + 128 + 256
    r.cancel(0, 200)
    assert (r.used, r.max_alloc) == before
    assert r.alloc(100) == 896  # the tail is usable again
    r.cancel(896, 100)
    # cancel after the allocation that carried the skipped tail is gone
    assert r.alloc(200) == 0
    r.release(512, 384)  # frees [512, 1024) including the skipped tail
    assert r.used == 256
    r.cancel(0, 200)
    assert (r.used, r.outstanding, r.max_alloc) == (0, 0, 1024)


def test_ring_cancel_zero_size_and_full() -> None:
    r = RingAllocator(256, align=64)
    r.alloc(256)
    assert r.alloc(0) == 0
    r.cancel(0, 0)
    assert (r.used, r.outstanding) == (256, 1)
    r.cancel(0, 256)
    assert r.alloc(256) == 0


def test_ring_reset() -> None:
    r = RingAllocator(256, align=64)
    r.alloc(100)
    r.alloc(100)
    r.reset()
    assert (r.used, r.outstanding, r.max_alloc) == (0, 0, 256)
    assert r.alloc(256) == 0


def test_ring_align_one_packs_bytes() -> None:
    r = RingAllocator(10, align=1)
    assert [r.alloc(3), r.alloc(3), r.alloc(3)] == [0, 3, 6]
    assert r.alloc(2) is None and r.max_alloc == 1
    r.release_oldest()
    assert r.alloc(2) == 0  # wraps, skipping [9, 10)
    assert r.used == 3 + 3 + 1 + 2


@pytest.mark.parametrize(
    ("capacity", "align"),
    [(0, 64), (-64, 64), (100, 64), (64, 0), (64, 3), (64, -8), (True, 1), (64, True)],
)
def test_ring_invalid_parameters(capacity: int, align: int) -> None:
    with pytest.raises(InvalidParameter):
        RingAllocator(capacity, align=align)


def test_ring_has_no_per_byte_work() -> None:
    r = RingAllocator(1 << 50, align=4096)  # a petabyte of bookkeeping is instant
    assert r.alloc(1 << 49) == 0
    assert r.alloc((1 << 49) - 4096) == 1 << 49
    r.release_oldest()
    assert r.alloc(1 << 48) == 0
    assert r.used == (1 << 50) - 4096 + (1 << 48) - (1 << 49) + 4096


class RingModel(RuleBasedStateMachine):
    """The allocator against a model that knows only the live regions: allocations
    never overlap, stay in bounds and aligned, ``used`` never exceeds capacity, every
    answer (offset or None) is the one a FIFO ring must give, and bytes written into
    a region are intact when it is released."""

    def __init__(self) -> None:
        super().__init__()
        self.cap = 0
        self.align = 1
        self.ring = RingAllocator(1, align=1)
        self.live: deque[tuple[int, int, int, int]] = deque()  # off, n, need, fill byte
        self.mem = bytearray()
        self.counter = 0

    @initialize(blocks=st.integers(1, 24), align=st.sampled_from([1, 8, 64]))
    def setup(self, blocks: int, align: int) -> None:
        self.cap = blocks * align if align > 1 else blocks * 7
        self.align = align
        self.ring = RingAllocator(self.cap, align=align)
        self.mem = bytearray(self.cap)

    # -- the model -----------------------------------------------------------------

    def _busy(self) -> list[tuple[int, int]]:
        return [(off, need) for off, _, need, _ in self.live if need]

    def _head(self) -> int | None:
        busy = self._busy()
        return None if not busy else (busy[-1][0] + busy[-1][1]) % self.cap

    def expected(self, n: int) -> int | None:
        need = -(-n // self.align) * self.align
        head = self._head()
        if head is None:
            return 0
        busy = self._busy()
        for cand in (head, 0):
            if cand + need <= self.cap and all(
                cand + need <= off or off + nd <= cand for off, nd in busy
            ):
                return cand
        return None

    def expected_used(self) -> int:
        busy = self._busy()
        if not busy:
            return 0
        head = self._head()
        assert head is not None
        tail = busy[0][0]
        return (head - tail) % self.cap or self.cap

    # -- rules ---------------------------------------------------------------------

    def _alloc(self, n: int) -> bool:
        want = self.expected(n)
        got = self.ring.alloc(n)
        assert got == want, (n, got, want, list(self.live))
        if got is None:
            return False
        self.counter = self.counter % 250 + 1
        self.mem[got : got + n] = bytes([self.counter]) * n
        need = -(-n // self.align) * self.align
        self.live.append((got, n, need, self.counter))
        return True

    @rule(data=st.data())
    def alloc(self, data: st.DataObject) -> None:
        small = st.integers(0, max(1, self.cap // 3))
        n = data.draw(
            st.one_of(
                small,
                small,
                st.integers(0, self.cap),
                st.just(self.ring.max_alloc),
                st.sampled_from([0, 1, self.align, self.cap]),
            )
        )
        self._alloc(n)

    @rule(data=st.data())
    def stream(self, data: st.DataObject) -> None:
        """The broker's steady state: allocate, and release the oldest when full, so
        allocations go round the ring and wrap many times."""
        sizes = data.draw(st.lists(st.integers(0, max(1, self.cap // 2)), max_size=40))
        for n in sizes:
            while not self._alloc(n):
                self.ring.release_oldest()
                self._check_and_drop_oldest()

    @rule(extra=st.integers(1, 1000))
    def alloc_too_large(self, extra: int) -> None:
        before = (self.ring.used, self.ring.outstanding)
        with pytest.raises(FrameTooLarge):
            self.ring.alloc(self.cap + extra)
        assert (self.ring.used, self.ring.outstanding) == before

    def _check_and_drop_oldest(self) -> None:
        off, n, _, fill = self.live.popleft()
        assert self.mem[off : off + n] == bytes([fill]) * n, "region was overwritten"

    @precondition(lambda self: self.live)
    @rule()
    def release(self) -> None:
        off, n, _, _ = self.live[0]
        self.ring.release(off, n)
        self._check_and_drop_oldest()

    @precondition(lambda self: self.live)
    @rule()
    def release_oldest(self) -> None:
        assert self.ring.release_oldest() == self.live[0][:2]
        self._check_and_drop_oldest()

    @precondition(lambda self: self.live)
    @rule()
    def cancel_newest(self) -> None:
        off, n, _, fill = self.live[-1]
        self.ring.cancel(off, n)
        self.live.pop()
        assert self.mem[off : off + n] == bytes([fill]) * n, "region was overwritten"

    @precondition(lambda self: len(self.live) >= 2)
    @rule(data=st.data())
    def cancel_not_newest(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.live) - 2))
        off, n, _, _ = self.live[i]
        if (off, n) == self.live[-1][:2]:
            return  # two zero-size spans at one offset are interchangeable
        before = (self.ring.used, self.ring.outstanding, self.ring.max_alloc)
        with pytest.raises(ReleaseOrderError):
            self.ring.cancel(off, n)
        assert (self.ring.used, self.ring.outstanding, self.ring.max_alloc) == before

    @precondition(lambda self: len(self.live) >= 2)
    @rule(data=st.data())
    def release_out_of_order(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(1, len(self.live) - 1))
        off, n, _, _ = self.live[i]
        if (off, n) == self.live[0][:2]:
            return  # two zero-size spans at one offset are interchangeable
        before = (self.ring.used, self.ring.outstanding, self.ring.oldest())
        with pytest.raises(ReleaseOrderError):
            self.ring.release(off, n)
        assert (self.ring.used, self.ring.outstanding, self.ring.oldest()) == before

    @precondition(lambda self: not self.live)
    @rule()
    def release_empty(self) -> None:
        with pytest.raises(ReleaseOrderError):
            self.ring.release_oldest()

    @rule()
    def reset(self) -> None:
        if self.live and self.counter % 7:  # now and then
            return
        self.ring.reset()
        self.live.clear()

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        r = self.ring
        assert 0 <= r.used <= r.capacity == self.cap
        assert r.used + r.free == r.capacity
        assert r.used == self.expected_used()
        assert r.used >= sum(need for _, _, need, _ in self.live)
        assert r.outstanding == len(self.live)
        assert r.oldest() == (self.live[0][:2] if self.live else None)
        busy = sorted(self._busy())
        for off, need in busy:
            assert off % self.align == 0
            assert 0 <= off and off + need <= self.cap
        for (o1, n1), (o2, _) in itertools.pairwise(busy):
            assert o1 + n1 <= o2, "live regions overlap"

    @invariant()
    def max_alloc_is_tight(self) -> None:
        m = self.ring.max_alloc
        assert m % self.align == 0
        assert self.expected(m) is not None
        if m < self.cap:
            assert self.expected(m + 1) is None


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


# ======================================================================================
# hygiene: names
# ======================================================================================


def test_pool_tag_and_names() -> None:
    tag = pool_tag(1234, "abc9")
    assert tag == "fc-1234-abc9"
    assert parse_tag(tag) == (1234, "abc9")
    name = segment_name(tag, 3, "rep")
    assert name == "fc-1234-abc9-w3-rep"
    assert parse_tag(name) == (1234, "abc9")
    assert validate_name(name) == name
    assert segment_name(tag, 0, "req") != segment_name(tag, 0, "rep")
    path = socket_path("/run/user/1000/framecrypt", tag, "ctl")
    assert path == "/run/user/1000/framecrypt/fc-1234-abc9-ctl.ipc"
    assert parse_tag(os.path.basename(path)) == (1234, "abc9")
    fresh = new_pool_tag()
    parsed = parse_tag(fresh)
    assert parsed is not None and parsed[0] == os.getpid()
    assert new_pool_tag() != fresh


@pytest.mark.parametrize(
    ("pid", "nonce"),
    [
        (0, "a"),
        (-1, "a"),
        (True, "a"),
        (10**10, "a"),
        (1, ""),
        (1, "a-b"),
        (1, "a" * 33),
        (1, "é"),
        (1, "a/b"),
    ],
)
def test_pool_tag_rejects(pid: int, nonce: str) -> None:
    with pytest.raises(InvalidName):
        pool_tag(pid, nonce)


def test_segment_and_socket_names_reject() -> None:
    tag = pool_tag(1, "n")
    for bad in [
        lambda: segment_name("fc-1", 0, "req"),
        lambda: segment_name("../x", 0, "req"),
        lambda: segment_name(tag, -1, "req"),
        lambda: segment_name(tag, 0, "in"),  # type: ignore[arg-type]
        lambda: socket_path("/tmp", tag, "a/b"),
        lambda: socket_path("/tmp", tag, ""),
        lambda: socket_path("/" + "d" * 100, tag, "ctl"),  # over a sockaddr_un
    ]:
        with pytest.raises(InvalidName):
            bad()


@pytest.mark.parametrize(
    "name",
    [
        "fc-0-a",
        "fc--1-a",
        "fc-1-",
        "fc-1-a b",
        "xfc-1-a",
        "fc-1-a/b",
        "fc-x-a",
        "fc-1",
        "fc-1-" + "a" * 33,
        "framecrypt",
        "fc-12345678901-a",
    ],
)
def test_parse_tag_rejects(name: str) -> None:
    assert parse_tag(name) is None


# ======================================================================================
# hygiene: runtime_dir
# ======================================================================================


def test_runtime_dir_under_xdg(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    with umask(0o277):
        path = runtime_dir(environ={"XDG_RUNTIME_DIR": str(xdg)}, fallback_root=str(tmp_path))
    assert path == str(xdg / "framecrypt")
    st_ = os.lstat(path)
    assert stat.S_ISDIR(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o700
    assert st_.st_uid == os.geteuid()
    assert runtime_dir(environ={"XDG_RUNTIME_DIR": str(xdg)}) == path  # again: fine


def test_runtime_dir_fallback(tmp_path: Path) -> None:
    expected = str(tmp_path / f"framecrypt-{os.geteuid()}")
    assert runtime_dir(environ={}, fallback_root=str(tmp_path)) == expected
    assert stat.S_IMODE(os.lstat(expected).st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    for xdg in ["", "relative/dir", str(tmp_path / "missing"), str(shared)]:
        assert runtime_dir(environ={"XDG_RUNTIME_DIR": xdg}, fallback_root=str(tmp_path)) == (
            expected
        )


@needs_root
def test_runtime_dir_ignores_an_xdg_dir_of_another_user(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    os.chown(xdg, OTHER_UID, OTHER_UID)
    path = runtime_dir(environ={"XDG_RUNTIME_DIR": str(xdg)}, fallback_root=str(tmp_path))
    assert path == str(tmp_path / f"framecrypt-{os.geteuid()}")


def test_runtime_dir_refuses_unsafe_existing_paths(tmp_path: Path) -> None:
    uid = os.geteuid()
    root = tmp_path / "loose"
    root.mkdir()
    (root / f"framecrypt-{uid}").mkdir(mode=0o755)
    os.chmod(root / f"framecrypt-{uid}", 0o755)
    with pytest.raises(UnsafePath, match="mode 0o755"):
        runtime_dir(environ={}, fallback_root=str(root))

    root = tmp_path / "symlinked"
    root.mkdir()
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (root / f"framecrypt-{uid}").symlink_to(target)
    with pytest.raises(UnsafePath, match="symlink"):
        runtime_dir(environ={}, fallback_root=str(root))

    root = tmp_path / "file"
    root.mkdir()
    (root / f"framecrypt-{uid}").write_text("")
    with pytest.raises(UnsafePath, match="not a directory"):
        runtime_dir(environ={}, fallback_root=str(root))

    with pytest.raises(TransportError):
        runtime_dir(environ={}, fallback_root=str(tmp_path / "no" / "such"))


@needs_root
def test_runtime_dir_refuses_a_dir_of_another_user(tmp_path: Path) -> None:
    d = tmp_path / f"framecrypt-{os.geteuid()}"
    d.mkdir(mode=0o700)
    os.chown(d, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafePath, match="owned by uid"):
        runtime_dir(environ={}, fallback_root=str(tmp_path))


# ======================================================================================
# hygiene: sweep_stale and Registry
# ======================================================================================

CHILD_LEAVE_FILES = r"""
import os, socket, sys
from framecrypt.transports.hygiene import pool_tag, segment_name, socket_path
from framecrypt.transports.shm import Segment
shm_dir, run_dir = sys.argv[1], sys.argv[2]
tag = pool_tag(os.getpid(), "dead01")
segs = [Segment.create(segment_name(tag, w, d), 4096, dir=shm_dir)
        for w in range(2) for d in ("req", "rep")]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(socket_path(run_dir, tag, "ctl"))
sock.listen()
print(tag, flush=True)
sys.stdin.read()  # until killed
"""


def _start_and_kill_broker(
    shm_dir: Path, run_dir: Path, while_alive: Callable[[str], None] | None = None
) -> str:
    """Run a 'broker' that creates segments and an ipc socket, call ``while_alive(tag)``,
    then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_LEAVE_FILES, str(shm_dir), str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], SUBPROCESS_TIMEOUT)
        assert ready, "child did not start"
        tag = proc.stdout.readline().strip()
        assert tag, proc.stderr.read() if proc.stderr else ""
        if while_alive is not None:
            while_alive(tag)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=SUBPROCESS_TIMEOUT)  # reaped: a zombie would count as alive
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    assert proc.returncode == -signal.SIGKILL
    return tag


@pytest.mark.timeout(SUBPROCESS_TIMEOUT * 2)
def test_sweep_removes_a_killed_brokers_files_only(tmp_path: Path) -> None:
    shm_dir, run_dir = tmp_path / "shm", tmp_path / "run"
    shm_dir.mkdir()
    run_dir.mkdir(mode=0o700)
    dead_tag = _start_and_kill_broker(shm_dir, run_dir)
    dead = parse_tag(dead_tag)
    assert dead is not None and not pid_alive(dead[0])
    dead_files = {str(p) for p in shm_dir.iterdir()} | {str(p) for p in run_dir.iterdir()}
    assert len(dead_files) == 5

    # what must survive the sweep
    live_tag = new_pool_tag()  # our own pool: alive
    live_seg = Segment.create(segment_name(live_tag, 0, "req"), 4096, dir=str(shm_dir))
    live_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live_sock.bind(socket_path(str(run_dir), live_tag, "ctl"))
    keep = [
        shm_dir / "unrelated-file",
        shm_dir / f"{dead_tag}_x",  # not a tag followed by - or .
        shm_dir / f"fc-{dead[0]}-dir",  # a directory
        run_dir / f"{dead_tag}-link",  # a symlink
    ]
    keep[0].write_bytes(b"x")
    keep[1].write_bytes(b"x")
    keep[2].mkdir()
    keep[3].symlink_to(shm_dir / "unrelated-file")
    if ROOT:  # a dead pid's file that belongs to another user
        other = shm_dir / f"{dead_tag}-w9-req"
        other.write_bytes(b"x")
        os.chown(other, OTHER_UID, OTHER_UID)
        keep.append(other)
    try:
        removed = sweep_stale(str(shm_dir), str(run_dir))
        assert set(removed) == dead_files
        assert len(removed) == len(dead_files)
        for p in keep:
            assert os.path.lexists(p), p
        assert os.path.exists(live_seg.path)
        assert os.path.exists(socket_path(str(run_dir), live_tag, "ctl"))
        assert sweep_stale(str(shm_dir), str(run_dir)) == []  # nothing left to do
    finally:
        live_sock.close()
        live_seg.close()
        live_seg.unlink()


@pytest.mark.timeout(SUBPROCESS_TIMEOUT * 2)
def test_sweep_keeps_segments_an_orphaned_worker_still_maps(tmp_path: Path) -> None:
    shm_dir, run_dir = tmp_path / "shm", tmp_path / "run"
    shm_dir.mkdir()
    run_dir.mkdir(mode=0o700)
    workers: list[Segment] = []

    def attach_like_a_worker(tag: str) -> None:
        for d in ("req", "rep"):
            workers.append(Segment.attach(segment_name(tag, 0, d), dir=str(shm_dir)))

    dead_tag = _start_and_kill_broker(shm_dir, run_dir, attach_like_a_worker)
    req, rep = workers
    removed = sweep_stale(str(shm_dir), str(run_dir))
    assert sorted(os.path.basename(p) for p in removed) == [
        f"{dead_tag}-ctl.ipc",
        f"{dead_tag}-w1-rep",
        f"{dead_tag}-w1-req",
    ]
    assert os.path.exists(req.path) and os.path.exists(rep.path)  # still mapped here
    req.close()
    assert sweep_stale(str(shm_dir), str(run_dir)) == [req.path]
    kept = rep.view[0:8]  # a view that outlives close(): still mapped, still locked
    with pytest.warns(ResourceWarning):
        rep.close()
    assert sweep_stale(str(shm_dir), str(run_dir)) == []
    kept.release()
    assert sweep_stale(str(shm_dir), str(run_dir)) == [rep.path]
    assert list(shm_dir.iterdir()) == [] and list(run_dir.iterdir()) == []


def test_attach_fails_while_a_sweep_holds_the_segment(tmp_path: Path) -> None:
    import fcntl

    with Segment.create("s", 4096, dir=str(tmp_path)) as seg:
        fd = os.open(seg.path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # mapped: the sweep cannot lock it
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    path = tmp_path / "t"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, 4096)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as sweep_stale does
        with pytest.raises(SegmentError, match="being removed"):
            Segment.attach("t", dir=str(tmp_path))
    finally:
        os.close(fd)
    with Segment.attach("t", dir=str(tmp_path)):
        pass


def test_sweep_leaves_other_users_files_simulated(
    tmp_path: Path, dead_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / f"fc-{dead_pid}-abc-w0-req"
    stale.write_bytes(b"x")
    real = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real + 1)
    assert sweep_stale(str(tmp_path), str(tmp_path / "missing")) == []
    assert stale.exists()
    monkeypatch.setattr(os, "geteuid", lambda: real)
    assert sweep_stale(str(tmp_path), str(tmp_path / "missing")) == [str(stale)]


def test_sweep_skips_missing_dirs(tmp_path: Path) -> None:
    assert sweep_stale(str(tmp_path / "a"), str(tmp_path / "b")) == []
    (tmp_path / "f").write_text("")
    assert sweep_stale(str(tmp_path / "f"), str(tmp_path / "f")) == []


def test_pid_alive(dead_pid: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid)
    assert pid_alive(2**40)  # not a pid: never treated as dead

    def not_ours(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_ours)
    assert pid_alive(dead_pid)  # alive but not ours: leave its files


def test_registry_cleanup_is_idempotent(tmp_path: Path) -> None:
    reg = Registry()
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("")
    b.write_text("")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s = str(tmp_path / "s.ipc")
    sock.bind(s)
    sock.close()
    for p in (str(a), str(b), s, str(tmp_path / "never-created")):
        assert reg.add(p) == p
    reg.add(str(a))  # a set
    assert len(reg) == 4 and str(a) in reg and next(iter(reg)) == str(a)
    b.unlink()  # already gone: fine
    assert reg.cleanup() == [str(a), s]
    assert len(reg) == 0 and not a.exists() and not os.path.exists(s)
    assert reg.cleanup() == []
    reg.add(str(a))
    reg.discard(str(a))
    reg.discard("not there")
    assert reg.cleanup() == []


def test_registry_keeps_what_it_cannot_remove(tmp_path: Path) -> None:
    reg = Registry()
    d = tmp_path / "dir"
    d.mkdir()
    reg.add(str(d))  # unlink() of a directory fails
    assert reg.cleanup() == []
    assert str(d) in reg and d.exists()


def test_registry_with_segments(tmp_path: Path) -> None:
    reg = Registry()
    tag = new_pool_tag()
    segs = [
        Segment.create(segment_name(tag, w, d), 4096, dir=str(tmp_path))
        for w in range(2)
        for d in ("req", "rep")
    ]
    for seg in segs:
        reg.add(seg.path)
    for seg in segs:
        seg.close()
    assert sorted(reg.cleanup()) == sorted(seg.path for seg in segs)
    assert list(tmp_path.iterdir()) == []

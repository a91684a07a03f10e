"""Anonymous shared memory (issue 13, item 5): sealed memfd segments, a worker's
:class:`RingPair` handed over by inheritance (``pass_fds``), what a SIGKILL leaves
behind (nothing), and the facts about ZeroMQ ipc endpoints behind the decision to keep
the file socket (see the module notes of :mod:`framecrypt.transports.hygiene`).

Real processes are used where the property is about processes: a child that maps
inherited descriptors, a creator that is SIGKILLed while a grandchild still maps the
memory, and a second uid (root only) that tries the broker's socket.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import select
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from framecrypt.errors import InvalidParameter
from framecrypt.transports.errors import InvalidName, SegmentError
from framecrypt.transports.hygiene import parse_tag
from framecrypt.transports.memfd import RingPair
from framecrypt.transports.shm import SEALS, Segment, memfd_supported

pytestmark = pytest.mark.skipif(not memfd_supported(), reason="no memfd_create/sealing here")

ROOT = os.geteuid() == 0
OTHER_UID = 65534  # nobody
TIMEOUT = 60  # seconds; a bound for waiting on a child, never a delay


def label() -> str:
    return f"fc-test-{secrets.token_hex(6)}"


def fd_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as e:
        assert e.errno == errno.EBADF
        return False
    return True


def holders(needle: str) -> list[str]:
    """Every ``/proc/PID/fd/N`` and ``/proc/PID/maps`` line that refers to a memfd
    whose label contains ``needle``: who can still reach that memory."""
    found: list[str] = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone meanwhile, or not ours to read (it cannot hold our memfd)
            fds = []
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile (listdir's own descriptor, say)
                continue
            if target.startswith("/memfd:") and needle in target:
                found.append(f"{pid} fd {fd}: {target}")
        try:
            with open(f"/proc/{pid}/maps") as f:
                found += [f"{pid} maps: {ln.strip()}" for ln in f if f"/memfd:{needle}" in ln]
        except OSError:
            continue
    return found


def paths_held(pid: int) -> list[str]:
    """The file-system paths ``pid`` has open (beyond the stdio it inherited from the
    test) or mapped; memfds, pipes and sockets are not paths."""
    paths = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if int(fd) <= 2:
            continue
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/"):
            paths.append(target)
    with open(f"/proc/{pid}/maps") as f:
        for ln in f:
            fields = ln.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/"):
                paths.append(fields[5].strip())
    return paths


class Lines:
    """Lines from a pipe, read with ``select`` and ``os.read``: nothing waits in a
    Python buffer where ``select`` cannot see it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def next(self, what: str) -> str:
        while b"\n" not in self.buf:
            ready, _, _ = select.select([self.fd], [], [], TIMEOUT)
            assert ready, f"no line from {what} within {TIMEOUT}s"
            chunk = os.read(self.fd, 4096)
            assert chunk, f"{what} closed its output"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode().strip()


# ======================================================================================
# Segment.anonymous / from_fd
# ======================================================================================


def test_anonymous_segment_is_a_sealed_private_memfd() -> None:
    lab = label()
    with Segment.anonymous(1 << 20, label=lab) as seg:
        assert not seg.named and seg.path == "" and seg.created and seg.name == lab
        assert seg.size == len(seg.view) == 1 << 20
        assert bytes(seg.view[:16]) == bytes(16) and seg.view[-1] == 0  # zero-filled
        st = os.fstat(seg.fd)
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 0  # no name anywhere
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_size == 1 << 20 and st.st_blocks * 512 >= 1 << 20  # reserved
        assert fcntl.fcntl(seg.fd, fcntl.F_GET_SEALS) == SEALS
        assert os.readlink(f"/proc/self/fd/{seg.fd}") == f"/memfd:{lab} (deleted)"
        assert fcntl.fcntl(seg.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # only via pass_fds
        assert not os.get_inheritable(seg.fd)
        with pytest.raises(PermissionError):
            os.ftruncate(seg.fd, 1 << 19)
        with pytest.raises(PermissionError):
            os.ftruncate(seg.fd, 1 << 21)
        assert seg.unlink() is False  # nothing to remove
        assert "anonymous" in repr(seg)
        fd = seg.fd
    assert seg.closed and not fd_open(fd)
    assert holders(lab) == []
    with pytest.raises(SegmentError, match="closed"):
        _ = seg.fd


def test_anonymous_without_reserve_is_sparse() -> None:
    with Segment.anonymous(1 << 20, label=label(), reserve=False) as seg:
        assert os.fstat(seg.fd).st_blocks == 0
        seg.view[-1] = 7
        assert seg.view[-1] == 7


def test_anonymous_rejects_bad_labels_and_sizes() -> None:
    for bad in ("", "a/b", "x" * 201, ".."):
        with pytest.raises(InvalidName):
            Segment.anonymous(4096, label=bad)
    for size in (0, -1, True, 1.5):
        with pytest.raises(InvalidParameter):
            Segment.anonymous(size, label=label())  # type: ignore[arg-type]


def test_reserve_failure_is_a_segment_error_and_leaves_nothing_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_memory(fd: int, off: int, n: int) -> None:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(os, "posix_fallocate", no_memory)
    lab = label()
    with pytest.raises(SegmentError, match="reserve"):
        Segment.anonymous(4096, label=lab)
    with pytest.raises(SegmentError, match="reserve"):
        RingPair.create(4096, label=lab)
    assert holders(lab) == []


def test_named_segment_has_no_fd(tmp_path: Path) -> None:
    with Segment.create("s", 4096, dir=str(tmp_path)) as seg:
        assert seg.named
        with pytest.raises(SegmentError, match="no descriptor"):
            _ = seg.fd


def test_from_fd_shares_memory_and_owns_only_its_duplicate() -> None:
    with Segment.anonymous(1 << 16, label=label()) as seg:
        peer = Segment.from_fd(seg.fd, 1 << 16)
        assert peer.fd != seg.fd and not peer.created and not peer.named
        assert peer.name == seg.name and peer.same_memory(seg)
        seg.view[:5] = b"hello"
        assert bytes(peer.region(0, 5)) == b"hello"
        peer.region((1 << 16) - 3, 3)[:] = b"end"
        assert bytes(seg.view[-3:]) == b"end"
        small = Segment.from_fd(seg.fd, 4096)  # "at least size": maps the first 4096
        assert small.size == 4096 and bytes(small.view[:5]) == b"hello"
        own = peer.fd
        peer.close()
        small.close()
        assert not fd_open(own) and fd_open(seg.fd)  # the caller's fd stays the caller's
        assert bytes(seg.view[:5]) == b"hello"


def _memfd(size: int, seals: int, *, sealing: bool = True) -> int:
    flags = os.MFD_CLOEXEC | (os.MFD_ALLOW_SEALING if sealing else 0)
    fd = os.memfd_create("fc-test-raw", flags)
    os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


@pytest.fixture
def fds() -> Iterator[list[int]]:
    opened: list[int] = []
    yield opened
    for fd in opened:
        os.close(fd)


def test_from_fd_rejects_what_is_not_a_sealed_memfd_of_the_size(
    tmp_path: Path, fds: list[int]
) -> None:
    regular = tmp_path / "f"
    regular.write_bytes(bytes(8192))
    fds.append(os.open(regular, os.O_RDWR))
    r, w = os.pipe()
    fds += [r, w]
    refused = {
        fds[0]: "has a name",  # a file, like a named segment
        r: "not a regular file",
        _memfd(8192, 0, sealing=False): "not a sealed memfd",  # sealing not allowed
        _memfd(8192, 0): "not a sealed memfd",  # allowed, but nothing sealed
        _memfd(8192, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW): "not a sealed memfd",  # open seals
        _memfd(8192, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL): "not a sealed memfd",  # can grow
        _memfd(4096, SEALS): "has 4096 bytes, expected at least 8192",  # too small
        _memfd(8192, SEALS | fcntl.F_SEAL_WRITE): "sealed against writing",
    }
    fds += [fd for fd in refused if fd not in fds]
    if os.path.isdir("/dev/shm"):  # a tmpfs file without a name still has no seals
        try:
            tmpfile = os.open("/dev/shm", os.O_RDWR | os.O_TMPFILE, 0o600)
        except OSError:
            pass
        else:
            fds.append(tmpfile)
            os.ftruncate(tmpfile, 8192)
            refused[tmpfile] = "not a sealed memfd"
    for fd, why in refused.items():
        with pytest.raises(SegmentError, match=why):
            Segment.from_fd(fd, 8192)
        assert fd_open(fd)  # a refused descriptor is left alone
    closed_fd = _memfd(8192, SEALS)
    os.close(closed_fd)
    with pytest.raises(SegmentError, match="not an open descriptor"):
        Segment.from_fd(closed_fd, 8192)
    for bad in (-1, True, "3", None):
        with pytest.raises(InvalidParameter):
            Segment.from_fd(bad, 8192)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        Segment.from_fd(r, 0)


def test_close_with_a_live_slice_keeps_the_mapping_but_closes_the_fd() -> None:
    lab = label()
    seg = Segment.anonymous(1 << 16, label=lab)
    fd = seg.fd
    kept = seg.view[0:8]
    with pytest.warns(ResourceWarning):
        seg.close()
    assert not fd_open(fd)
    kept[:2] = b"ok"  # still mapped: the mapping holds the memory by itself
    assert bytes(kept[:2]) == b"ok"
    assert holders(lab)  # in our maps
    kept.release()
    assert holders(lab) == []


# ======================================================================================
# RingPair: create, hand over by inheritance, attach
# ======================================================================================

CHILD_ATTACH = r"""
import fcntl, os, sys
from framecrypt.transports.memfd import RingPair
req_fd, rep_fd, size = map(int, sys.argv[1:4])
with RingPair.attach((req_fd, rep_fd), size) as rings:
    assert bytes(rings.request.view) == bytes(i % 251 for i in range(size)), "request"
    rings.reply.view[:] = bytes(i * 7 % 253 for i in range(size))
    for fd in (req_fd, rep_fd):  # a peer cannot resize the memory under the broker
        for n in (0, size // 2, size * 2):
            try:
                os.ftruncate(fd, n)
            except PermissionError:
                continue
            raise SystemExit(f"ftruncate({fd}, {n}) was allowed")
        try:  # nor change the seals (e.g. seal it read-only)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
        except PermissionError:
            continue
        raise SystemExit(f"added a seal to {fd}")
    print("ok", rings.request.name, rings.reply.name, flush=True)
"""


@pytest.mark.timeout(TIMEOUT * 2)
def test_ring_pair_handed_to_a_child_by_pass_fds() -> None:
    size = 1 << 16
    lab = label()
    with RingPair.create(size, label=lab) as rings:
        assert rings.size == size and rings.request.name == f"{lab}-req"
        assert rings.reply.name == f"{lab}-rep"
        rings.request.view[:] = bytes(i % 251 for i in range(size))
        req_fd, rep_fd = rings.fds()
        out = subprocess.run(
            [sys.executable, "-c", CHILD_ATTACH, str(req_fd), str(rep_fd), str(size)],
            pass_fds=rings.fds(),
            close_fds=True,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["ok", f"{lab}-req", f"{lab}-rep"]
        assert bytes(rings.reply.view) == bytes(i * 7 % 253 for i in range(size))
        assert os.fstat(req_fd).st_size == size  # the child's attempts changed nothing
        # without pass_fds the child gets nothing (O_CLOEXEC): the numbers are refused
        out = subprocess.run(
            [sys.executable, "-c", CHILD_ATTACH, str(req_fd), str(rep_fd), str(size)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert out.returncode != 0 and "SegmentError" in out.stderr
    assert rings.closed and holders(lab) == []


def test_ring_pair_attach_checks_the_pair() -> None:
    with RingPair.create(8192, label=label()) as rings:
        req_fd, rep_fd = rings.fds()
        dup = os.dup(req_fd)
        try:
            with pytest.raises(SegmentError, match="one memfd"):
                RingPair.attach((req_fd, dup), 8192)
            with pytest.raises(SegmentError, match="one memfd"):
                RingPair.attach((req_fd, req_fd), 8192)
        finally:
            os.close(dup)
        with pytest.raises(SegmentError, match="at least 16384"):
            RingPair.attach((req_fd, rep_fd), 16384)
        r, w = os.pipe()
        try:
            with pytest.raises(SegmentError, match="not a regular file"):
                RingPair.attach((req_fd, r), 8192)  # the request side is closed again
        finally:
            os.close(r)
            os.close(w)
        for bad in ((req_fd,), (req_fd, rep_fd, rep_fd), "ab"):
            with pytest.raises(InvalidParameter):
                RingPair.attach(bad, 8192)  # type: ignore[arg-type]
        maps_before = holders(rings.request.name)
        with RingPair.attach((req_fd, rep_fd), 8192) as peer:
            assert peer.request.same_memory(rings.request)
            assert peer.reply.same_memory(rings.reply)
            assert not peer.request.same_memory(rings.reply)
        assert holders(rings.request.name) == maps_before  # attach-and-close left nothing


def test_ring_pair_label_must_make_valid_names() -> None:
    with pytest.raises(InvalidName):
        RingPair.create(4096, label="x" * 199)  # "-req" makes it 203 characters
    with pytest.raises(InvalidName):
        RingPair.create(4096, label="a/b")


# ======================================================================================
# SIGKILL: nothing left behind, memory freed with its last holder
# ======================================================================================

SURVIVOR = r"""
import os, signal, sys
from framecrypt.transports.memfd import RingPair
req, rep, size = map(int, sys.argv[1:4])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
rings = RingPair.attach((req, rep), size)
os.close(req)
os.close(rep)  # from here on only the segments' own descriptors and the mappings
print("survivor", os.getpid(), flush=True)
signal.sigwait({signal.SIGUSR1})
print("still", bytes(rings.request.view[:6]).decode(), flush=True)
signal.sigwait({signal.SIGUSR1})  # until killed
"""

CREATOR = r"""
import os, subprocess, sys
from framecrypt.transports.memfd import RingPair
lab, size, survivor = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rings = RingPair.create(size, label=lab)
rings.request.view[:6] = b"SECRET"
child = subprocess.Popen([sys.executable, "-c", survivor, *map(str, rings.fds()), str(size)],
                         pass_fds=rings.fds(), stdin=subprocess.DEVNULL)
print("creator", os.getpid(), child.pid, flush=True)
sys.stdin.read()  # until killed
"""


def _listing() -> set[str]:
    return {f"/dev/shm/{n}" for n in os.listdir("/dev/shm")} | {
        f"/tmp/{n}" for n in os.listdir("/tmp")
    }


@pytest.mark.timeout(TIMEOUT * 3)
@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_sigkill_leaves_nothing_and_the_memory_goes_with_its_last_holder(
    tmp_path: Path,
) -> None:
    lab = label()
    size = 1 << 20
    before = _listing()
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    creator = subprocess.Popen(
        [sys.executable, "-c", CREATOR, lab, str(size), SURVIVOR],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(private_tmp)},
    )
    survivor_pidfd = None
    try:
        assert creator.stdout is not None
        out = Lines(creator.stdout.fileno())  # the creator's and then the survivor's
        got = [out.next("creator or survivor").split() for _ in range(2)]
        lines = {g[0]: g[1:] for g in got}
        assert set(lines) == {"creator", "survivor"}, got
        survivor = int(lines["survivor"][0])
        assert lines["creator"] == [str(creator.pid), str(survivor)]
        survivor_pidfd = os.pidfd_open(survivor)
        # while alive: the memory is in both, and neither holds a path in /dev/shm or /tmp
        for pid in (creator.pid, survivor):
            held = paths_held(pid)
            assert not [p for p in held if p.startswith(("/dev/shm", "/tmp"))], held
        assert {h.split()[0] for h in holders(lab)} == {str(creator.pid), str(survivor)}

        creator.send_signal(signal.SIGKILL)
        assert creator.wait(timeout=TIMEOUT) == -signal.SIGKILL

        new = _listing() - before
        ours = [
            n
            for n in new
            if lab in n or (parse_tag(os.path.basename(n)) or (0,))[0] in (creator.pid, survivor)
        ]
        assert ours == [], ours
        assert list(private_tmp.iterdir()) == []
        # the survivor is now the only holder, and the memory still there
        assert {h.split()[0] for h in holders(lab)} == {str(survivor)}
        signal.pidfd_send_signal(survivor_pidfd, signal.SIGUSR1)
        assert out.next("survivor") == "still SECRET"

        signal.pidfd_send_signal(survivor_pidfd, signal.SIGKILL)
        ready, _, _ = select.select([survivor_pidfd], [], [], TIMEOUT)  # readable: exited
        assert ready, "the survivor did not exit"
        assert holders(lab) == []  # no process holds it: the kernel has freed it
    finally:
        if creator.poll() is None:
            creator.kill()
            creator.wait(timeout=TIMEOUT)
        if survivor_pidfd is not None:
            try:
                signal.pidfd_send_signal(survivor_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(survivor_pidfd)
        for f in (creator.stdin, creator.stdout):
            if f is not None:
                f.close()


# ======================================================================================
# ZeroMQ ipc endpoints: what the decision to keep the 0700 directory rests on
# ======================================================================================

GREETING = b"\xff" + bytes(8) + b"\x7f"  # a ZMTP 3 signature starts so


def _zmq_answers(address: str | bytes) -> bool:
    """Connect a raw Unix socket: True if the ZeroMQ listener talks (sends its ZMTP
    greeting), False if it closes the connection at once (refused by a filter)."""
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(TIMEOUT)  # a bound, not a delay: a greeting or EOF comes first
    try:
        raw.connect(address)
        try:
            first = raw.recv(1)
        except ConnectionResetError:
            return False
        return first == GREETING[:1]
    finally:
        raw.close()


def _router(ctx: zmq.Context[zmq.Socket[bytes]], uid: int | None) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    if uid is not None:
        sock.setsockopt(zmq.IPC_FILTER_UID, uid)
    return sock


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.destroy(linger=0)


def test_ipc_filter_uid_refuses_other_uids(
    tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """ZMQ_IPC_FILTER_UID works in this libzmq build: a peer whose SO_PEERCRED uid is
    not listed is closed at once (ZMQ_EVENT_ACCEPT_FAILED), a listed one is served."""
    me = os.geteuid()
    for allowed, served in ((me, True), (me + 1, False)):
        sock = _router(ctx, allowed)
        path = tmp_path / f"u{allowed}.ipc"
        sock.bind(f"ipc://{path}")
        mon = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_ACCEPT_FAILED)
        try:
            assert _zmq_answers(str(path)) is served
            assert mon.poll(TIMEOUT * 1000)
            event = recv_monitor_message(mon)["event"]
            assert event == (zmq.EVENT_ACCEPTED if served else zmq.EVENT_ACCEPT_FAILED)
        finally:
            sock.disable_monitor()
            mon.close(0)
            sock.close(0)


OTHER_USER_CONNECTS = r"""
import os, socket, sys
os.setgroups([])
os.setgid(int(sys.argv[2]))
os.setuid(int(sys.argv[2]))  # started as root (the venv may not be readable by nobody)
raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
raw.settimeout(60)
raw.connect(b"\0" + sys.argv[1].encode())
try:
    print("served" if raw.recv(1) == b"\xff" else "closed")
except ConnectionResetError:
    print("closed")
"""


@pytest.mark.timeout(TIMEOUT * 2)
@pytest.mark.skipif(not ROOT, reason="needs root to run a process as another uid")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets: Linux")
def test_abstract_endpoint_has_no_file_and_no_permissions(
    ctx: zmq.Context[zmq.Socket[bytes]],
) -> None:
    """``ipc://@name`` works and creates no file, but anyone in the network namespace can
    connect unless IPC_FILTER_UID is set: the facts behind keeping the file socket."""
    names: list[str] = []
    for uid_filter, other_uid_gets in ((None, "served"), (os.geteuid(), "closed")):
        name = label()
        sock = _router(ctx, uid_filter)
        before = _listing()
        sock.bind(f"ipc://@{name}")
        try:
            assert sock.getsockopt_string(zmq.LAST_ENDPOINT) == f"ipc://@{name}"
            with open("/proc/net/unix") as f:
                listed = [ln.split()[-1] for ln in f if name in ln]
            assert listed == [f"@{name}"]  # abstract: a name without a file
            assert not [n for n in _listing() - before if name in n]
            other = subprocess.run(
                [sys.executable, "-c", OTHER_USER_CONNECTS, name, str(OTHER_UID)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
            assert other.returncode == 0, other.stderr
            assert other.stdout.strip() == other_uid_gets
            assert _zmq_answers(b"\0" + name.encode())  # we are always served
        finally:
            sock.close(0)
        names.append(name)
    ctx.destroy(linger=0)  # returns once libzmq has closed its sockets (close is async)
    with open("/proc/net/unix") as f:
        assert not [ln for ln in f if any(n in ln for n in names)]  # gone with the sockets

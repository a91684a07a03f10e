"""Start and stop a private Janus (the Debian ``janus`` package) for tests and demos.

:class:`JanusServer` writes its own configuration folder (``janus -F DIR``) so that
nothing of ``/etc/janus`` is used: only the VideoRoom plugin and the HTTP and WebSocket
transports are loaded (symlinked into private plugin/transport folders), both bound to
127.0.0.1 on free ports; ICE is restricted to one local address (``ice_enforce_list``),
no STUN/TURN server, no IPv6, RTP on a private ``rtp_port_range``; the log goes to a file
in the folder.

Why not loopback for ICE: Janus never gathers candidates on a loopback interface (its
``ice.c`` skips ``IFF_LOOPBACK`` interfaces; with ``ice_enforce_list = "lo"`` nothing is
enforced and libnice falls back to every other interface). So ICE uses one address of
this host (``ice_address``: by default its first non-loopback IPv4 address); packets to
an address of the host itself are delivered inside the kernel and never leave the
machine. Members restrict their own candidates to the same address
(:meth:`framecrypt.webrtc.janus.JanusRoom.connect`'s ``ice_address``).

It waits for readiness by polling the HTTP API's ``info`` request (bounded), and stops
the process it started by its PID, then removes its folder (also when the start failed).

```python
with JanusServer() as janus:                 # or: async with JanusServer() as janus
    print(janus.ws_url, janus.http_url)     # ws://127.0.0.1:PORT, http://127.0.0.1:PORT/janus
```

Several rooms, any room options (simulcast included) are the client's business
(:mod:`framecrypt.webrtc.janus`); this module only runs the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import JanusUnavailable

__all__ = ["JANUS_LIB_DIRS", "JanusServer", "find_janus", "janus_unavailable",
           "local_ice_address"]

JANUS_LIB_DIRS = (Path("/usr/lib/x86_64-linux-gnu/janus"), Path("/usr/lib/aarch64-linux-gnu/janus"),
                  Path("/usr/lib/janus"), Path("/opt/janus/lib/janus"))
PLUGINS = ("libjanus_videoroom.so",)
TRANSPORTS = ("libjanus_http.so", "libjanus_websockets.so")


def find_janus() -> str | None:
    """The ``janus`` binary: ``$JANUS`` or the one on PATH."""
    env = os.environ.get("JANUS")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("janus")


def _lib_dir() -> Path | None:
    for d in JANUS_LIB_DIRS:
        if all((d / "plugins" / p).exists() for p in PLUGINS) and \
                all((d / "transports" / t).exists() for t in TRANSPORTS):
            return d
    return None


def local_ice_address() -> str | None:
    """The first non-loopback IPv4 address of this host (Janus's ICE address)."""
    from aioice.ice import get_host_addresses

    addrs = get_host_addresses(use_ipv4=True, use_ipv6=False)
    return str(addrs[0]) if addrs else None


def janus_unavailable() -> str | None:
    """Why a private Janus cannot be started here, or None when it can."""
    if find_janus() is None:
        return "janus not found (apt-get install janus janus-tools; .ci/install-janus)"
    if _lib_dir() is None:
        return "Janus's VideoRoom plugin or HTTP/WebSocket transports not found"
    if local_ice_address() is None:
        return "no non-loopback IPv4 address for ICE (Janus never gathers on loopback)"
    return None


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # resolved here: the child between fork and exec only calls it
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent (thread) dies (Linux
    ``PR_SET_PDEATHSIG``), so a killed test or demo leaves no Janus behind."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _jcfg(sections: dict[str, dict[str, Any]]) -> str:
    """libconfig text (Janus's .jcfg) of plain sections of scalars."""
    out = []
    for name, items in sections.items():
        out.append(f"{name}: {{")
        for k, v in items.items():
            if isinstance(v, bool):
                val = "true" if v else "false"
            elif isinstance(v, int):
                val = str(v)
            else:
                val = json.dumps(str(v))
            out.append(f"\t{k} = {val}")
        out.append("}")
    return "\n".join(out) + "\n"


class JanusServer:
    """A private Janus process on loopback (see the module docstring).

    ``workdir``: where the configuration, log and recordings go (default: a fresh
    temporary folder, removed on stop; a given folder is kept). ``rtp_port_range``:
    ``(low, high)`` (default: a random 400-port window in 42000-59999).
    ``session_timeout``: seconds without a request before Janus drops a session.
    ``ice_address``: the one local address Janus gathers ICE candidates on (default:
    :func:`local_ice_address`).
    """

    def __init__(self, workdir: Path | None = None, *, session_timeout: int = 60,
                 ice_address: str | None = None,
                 rtp_port_range: tuple[int, int] | None = None, debug_level: int = 4,
                 ready_timeout: float = 15.0, binary: str | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self.session_timeout = session_timeout
        if rtp_port_range is None:
            low = random.randrange(42000, 59600, 2)
            rtp_port_range = (low, low + 399)
        self.rtp_port_range = rtp_port_range
        self.debug_level = debug_level
        self.ready_timeout = ready_timeout
        self.binary = binary
        self.ice_address = ice_address or ""
        self.http_port = 0
        self.ws_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = f"pid={self.proc.pid}" if self.proc is not None else "stopped"
        return f"JanusServer({state}, ws_port={self.ws_port}, http_port={self.http_port})"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/janus"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "janus.log"

    @property
    def rec_dir(self) -> Path:
        """A folder for room recordings (``rec_dir`` of a room), inside the workdir."""
        assert self.workdir is not None, "not started"
        d = self.workdir / "recordings"
        d.mkdir(exist_ok=True)
        return d

    def log_tail(self, nbytes: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except (OSError, AssertionError):
            return ""
        return data[-nbytes:].decode(errors="replace")

    # --- configuration -----------------------------------------------------------------

    def _write_config(self, lib: Path) -> Path:
        assert self.workdir is not None
        cfg = self.workdir / "etc"
        for sub in ("plugins", "transports", "events", "loggers"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        cfg.mkdir(parents=True, exist_ok=True)
        for sub, names in (("plugins", PLUGINS), ("transports", TRANSPORTS)):
            for name in names:
                link = self.workdir / sub / name
                if not link.exists():
                    link.symlink_to(lib / sub / name)
        lo, hi = self.rtp_port_range
        (cfg / "janus.jcfg").write_text(_jcfg({
            "general": {
                "configs_folder": str(cfg),
                "plugins_folder": str(self.workdir / "plugins"),
                "transports_folder": str(self.workdir / "transports"),
                "events_folder": str(self.workdir / "events"),
                "loggers_folder": str(self.workdir / "loggers"),
                "log_to_stdout": False,
                "log_to_file": str(self.log_path),
                "debug_level": self.debug_level,
                "session_timeout": self.session_timeout,
                "server_name": "framecrypt-janus",
                # a random secret nobody uses: the admin API is off anyway
                "admin_secret": secrets.token_hex(16),
            },
            "media": {"rtp_port_range": f"{lo}-{hi}", "ipv6": False},
            "nat": {"ice_enforce_list": self.ice_address, "nice_debug": False,
                    "ignore_mdns": True},
            "events": {"broadcast": False},
        }))
        (cfg / "janus.transport.http.jcfg").write_text(_jcfg({
            "general": {"json": "compact", "base_path": "/janus", "http": True,
                        "port": self.http_port, "ip": "127.0.0.1", "https": False},
            "admin": {"admin_http": False, "admin_https": False},
        }))
        (cfg / "janus.transport.websockets.jcfg").write_text(_jcfg({
            "general": {"json": "compact", "ws": True, "ws_port": self.ws_port,
                        "ws_ip": "127.0.0.1", "wss": False},
            "admin": {"admin_ws": False, "admin_wss": False},
        }))
        (cfg / "janus.plugin.videoroom.jcfg").write_text(_jcfg({"general": {}}))
        return cfg

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> JanusServer:
        """Start Janus and wait until its HTTP API answers ``info`` and its WebSocket
        port accepts connections; :class:`JanusUnavailable` if it cannot. Call it from
        a thread that outlives the server: Janus is stopped when that thread ends."""
        try:
            last = ""
            for _attempt in range(3):  # a port taken between free_port() and bind: retry
                proc = self._launch()
                last = self._wait_ready(proc)
                if not last:
                    return self
                self._terminate()
            raise JanusUnavailable(f"Janus did not start: {last}\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    async def astart(self) -> JanusServer:
        """:meth:`start` without blocking the event loop (the process is launched from
        the loop's thread, so it dies with it; readiness is polled in a thread). A
        cancelled start stops what it started."""
        try:
            last = ""
            for _attempt in range(3):
                proc = self._launch()
                last = await asyncio.to_thread(self._wait_ready, proc)
                if not last:
                    return self
                self._terminate()
            raise JanusUnavailable(f"Janus did not start: {last}\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _launch(self) -> subprocess.Popen[bytes]:
        """Write the config on fresh ports and spawn Janus (in its own session, so a
        Ctrl-C in the terminal reaches the owner, which stops it; on Linux it also gets
        SIGTERM when the thread that started it dies)."""
        if self.proc is not None:
            raise RuntimeError("already started")
        binary = self.binary or find_janus()
        lib = _lib_dir()
        if binary is None or lib is None:
            raise JanusUnavailable(janus_unavailable() or "janus not usable")
        if not self.ice_address:
            self.ice_address = local_ice_address() or ""
            if not self.ice_address:
                raise JanusUnavailable(janus_unavailable() or "no ICE address")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="framecrypt-janus-"))
        self.http_port, self.ws_port = free_port(), free_port()
        cfg = self._write_config(lib)
        self.proc = subprocess.Popen(
            [binary, "-F", str(cfg), "-C", str(cfg / "janus.jcfg")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent)
        return self.proc

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> str:
        """'' when ready, else why not (the process died, or the deadline passed)."""
        deadline = time.monotonic() + self.ready_timeout
        why = "no answer"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"exited with status {proc.returncode}"
            try:
                info = self.info(timeout=1.0)
                if info.get("janus") == "server_info" and self._ws_accepts():
                    return ""
                why = "info answered without server_info" if info.get("janus") != \
                    "server_info" else "WebSocket port closed"
            except (OSError, ValueError) as e:
                why = f"{type(e).__name__}: {e}"
            time.sleep(0.1)  # poll interval of the readiness loop (bounded by deadline)
        return f"not ready after {self.ready_timeout:.0f} s ({why})"

    def _ws_accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ws_port), timeout=1.0):
                return True
        except OSError:
            return False

    def info(self, timeout: float = 2.0) -> dict[str, Any]:
        """The HTTP API's ``info`` reply (``server_info``: version, plugins, ...)."""
        body = json.dumps({"janus": "info", "transaction": secrets.token_hex(6)}).encode()
        req = urllib.request.Request(self.http_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            reply = json.loads(resp.read(1 << 20))
        if not isinstance(reply, dict):
            raise ValueError("info reply is not a JSON object")
        return reply

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop(self) -> None:
        """Stop the process (SIGTERM, SIGKILL after 5 s) and remove a temporary workdir."""
        self._terminate()
        if self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> JanusServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> JanusServer:
        return await self.astart()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)

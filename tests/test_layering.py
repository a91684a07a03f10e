"""The pure core stays pure: importing it loads no asyncio, zmq, threads or clocks."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = [
    "framecrypt.sframe",
    "framecrypt.livekit",
    "framecrypt.jitsi",
    "framecrypt.errors",
    "framecrypt.workers.sframe",
    "framecrypt.workers.livekit",
    "framecrypt.workers.dave",
    "framecrypt.workers.dave.footer",
    "framecrypt.workers.dave.frame",
    "framecrypt.workers.dave.h26x",
    "framecrypt.workers.dave.nonces",
    "framecrypt.workers.dave.receiver",
    "framecrypt.workers.dave.sender",
    "framecrypt.workers.dave.ratchet",
    "framecrypt.keys.olm",
    "framecrypt.workers.leb128",
    "framecrypt.keys.policy",
    "framecrypt.keys.actions",
    "framecrypt.keys.config",
    "framecrypt.keys.rotation",
    "framecrypt.keys.member_state",
    "framecrypt.keys.own_key",
    "framecrypt.keys.visitor_key",
    "framecrypt.keys.verification",
]
FORBIDDEN = ["asyncio", "zmq", "msgpack", "threading", "multiprocessing", "uvloop", "aiortc"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_nothing_impure(module: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"{module} pulled in: {out.stdout.strip()}"


def test_pure_sources_do_not_read_clocks_or_randomness() -> None:
    import pathlib

    import framecrypt.workers.livekit as lk
    import framecrypt.workers.sframe as sf

    for pkg in (lk, sf):
        for path in pathlib.Path(pkg.__path__[0]).glob("*.py"):
            text = path.read_text()
            for bad in ("import time", "import random", "os.urandom", "import asyncio",
                        "import zmq", "datetime.now", "secrets."):
                assert bad not in text, f"{path.name} uses {bad}"


# --- the broker's sans-I/O core and what lies below the broker ------------------------

SANS_IO = [
    "framecrypt.broker.ledger",
    "framecrypt.broker.credits",
    "framecrypt.broker.runs",
    "framecrypt.broker.batcher",
    "framecrypt.broker.keydir",
    "framecrypt.broker.placement",
    "framecrypt.broker.health",
    "framecrypt.transports.wire",
    "framecrypt.transports.to_worker",
    "framecrypt.transports.to_broker",
    "framecrypt.workers.engine",
    # DAVE's call member and gateway side: opcodes in, messages and events out
    "framecrypt.keys.dave_group",
    "framecrypt.keys.dave_call",
    "framecrypt.keys.dave_external",
    "framecrypt.keys.mls_wire",
]
NO_IO = ["asyncio", "zmq", "threading", "multiprocessing", "uvloop", "aiortc", "socket",
         "subprocess", "selectors"]
CLOCKS = [r"^\s*import (time|random|secrets|datetime)\b",
          r"^\s*from (time|random|secrets|datetime) import",
          r"\b(time|datetime|random|secrets)\.\w+", r"\.time\(\)", r"\bmonotonic\(",
          r"\bperf_counter\("]


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_modules_import_no_io(module: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(m for m in {NO_IO!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"{module} pulled in: {out.stdout.strip()}"


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_sources_read_no_clock_or_randomness(module: str) -> None:
    import importlib
    import pathlib
    import re

    path = pathlib.Path(importlib.import_module(module).__file__ or "")
    text = re.sub(r'"""(.|\n)*?"""', "", path.read_text())  # docstrings may say "time."
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        for bad in CLOCKS:
            assert not re.search(bad, code), f"{path.name}: reads a clock: {line!r}"


def test_nothing_below_the_broker_imports_it() -> None:
    """Arrows point down: API -> broker -> transports <- workers."""
    import pathlib
    import re

    import framecrypt

    root = pathlib.Path(framecrypt.__file__).resolve().parent.parent
    up = re.compile(r"^\s*(from|import)\s+(framecrypt\.broker\b|\.\.broker\b)")
    for folder in ("workers", "transports"):
        for path in (root / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                assert not up.search(line), f"{folder}/{path.name}:{n} imports the broker"
    batch = (root / "framecrypt" / "batch.py").read_text()
    assert "framecrypt.broker" not in batch

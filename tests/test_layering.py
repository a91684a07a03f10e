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
    "framecrypt.keys.olm",
    "framecrypt.keys.policy",
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

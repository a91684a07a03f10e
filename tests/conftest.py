"""Shared pytest fixtures."""

from __future__ import annotations

import os
from types import ModuleType

import lk_oracle
import pytest

# ---- livekit-client interop oracle (tests/interop, tests/lk_oracle.py) -----------------
# `lk` gives tests the oracle module once Node.js and the pinned npm package are present.
# Locally a missing node / `npm ci` skips with the reason; in CI (env CI set to anything but
# "", "0", "false" or "no") it FAILS instead: CI never silently skips the interop matrix.


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def lk() -> ModuleType:
    reason = lk_oracle.node_available()
    if reason is not None:
        if _in_ci():
            pytest.fail(f"livekit-client oracle unavailable in CI: {reason}", pytrace=False)
        pytest.skip(f"livekit-client oracle unavailable: {reason}")
    return lk_oracle


# ---- end of livekit-client interop oracle block ------------------------------------------

"""The compiled hot loop is there and says so: ``framecrypt.native_info()``, the
``FRAMECRYPT_NATIVE`` switch, key hygiene of the native AES-GCM object, the CLI."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest

import framecrypt
from framecrypt.workers import native

CI = os.environ.get("CI") == "true"
FORCED_PURE = os.environ.get("FRAMECRYPT_NATIVE") == "0"


def _info_in(env: dict[str, str]) -> dict[str, object]:
    code = "import json, framecrypt; print(json.dumps(framecrypt.native_info()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, env={**os.environ, **env})
    got: dict[str, object] = json.loads(out.stdout)
    return got


def test_ci_runs_the_extension() -> None:
    """Under CI the extension must have been built (make sets FRAMECRYPT_REQUIRE_NATIVE);
    only the fallback pass runs the pure core, and says why."""
    info = framecrypt.native_info()
    if FORCED_PURE:
        assert info == {"path": "python", "why": "FRAMECRYPT_NATIVE=0"}
        return
    if not CI and info["path"] != "native":
        pytest.skip(f"extension not running here: {info['why']}")
    assert info["path"] == "native", info
    assert info["backend"] in ("ipsec-mb", "evp")
    if CI and os.uname().machine == "x86_64":
        assert info["ipsec_mb_available"] is True, info
        assert info["backend"] == "ipsec-mb", info


def test_switch_in_a_fresh_process() -> None:
    assert _info_in({"FRAMECRYPT_NATIVE": "0"}) == {"path": "python",
                                                    "why": "FRAMECRYPT_NATIVE=0"}
    bad = _info_in({"FRAMECRYPT_NATIVE": "fast"})
    assert bad["path"] == "python" and "not 0, 1, auto, evp or ipsec-mb" in str(bad["why"])
    if native.NATIVE is None:
        pytest.skip("extension not running here")
    evp = _info_in({"FRAMECRYPT_NATIVE": "evp"})
    assert evp["path"] == "native" and evp["backend"] == "evp"
    assert "OpenSSL" in str(evp["backend_version"])
    missing = _info_in({"FRAMECRYPT_NATIVE_LIB": "/nonexistent/_native.so",
                        "FRAMECRYPT_NATIVE": "1"})
    assert missing["path"] == "python" and "extension not built" in str(missing["why"])


def test_the_pure_core_is_used_inside_using_python() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    with native.pure():
        assert type(native.aesgcm(bytes(16))) is AESGCM
        assert not native.active()
    if native.NATIVE is None:
        pytest.skip("extension not running here")
    assert native.is_native_key(native.aesgcm(bytes(16)))
    with native.using("evp"):
        assert repr(native.aesgcm(bytes(16))) == "AesGcm(AES-128, evp)"
    with pytest.raises(ValueError):
        with native.using("turbo"):
            pass


@pytest.mark.skipif(native.NATIVE is None, reason="extension not running here")
def test_native_key_object_hides_and_refuses_to_travel() -> None:
    key = bytes(range(32))
    a = native.aesgcm(key)
    assert key.hex() not in repr(a) and "key" not in repr(a).lower()
    with pytest.raises(TypeError):
        pickle.dumps(a)
    with pytest.raises(ValueError):
        native.aesgcm(bytes(15))
    with pytest.raises(ValueError):  # only 12-byte nonces on the native path
        a.encrypt(bytes(16), b"x", None)


def test_formats_prints_the_path() -> None:
    out = subprocess.run([sys.executable, "-m", "framecrypt", "formats"], capture_output=True,
                         text=True, timeout=120, check=True)
    info = framecrypt.native_info()
    assert f"hot loop: {info['path']}" in out.stdout

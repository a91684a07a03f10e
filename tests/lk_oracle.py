"""Python side of the livekit-client interop oracle (tests/interop/oracle.mjs).

The oracle runs the unmodified published ``livekit-client`` E2EE worker bundle under
Node.js. One call of :func:`run_job` starts one ``node`` process, feeds it one JSON job on
stdin and returns its JSON result; see the top of ``tests/interop/oracle.mjs`` for the job
schema. Batch many operations into one job: a node start costs ~0.3 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

INTEROP_DIR = Path(__file__).resolve().parent / "interop"
ORACLE = INTEROP_DIR / "oracle.mjs"
# data packets (DataCryptor) and the LKTS packet trailer: tests/interop/data_oracle.mjs
DATA_ORACLE = INTEROP_DIR / "data_oracle.mjs"
PINNED_VERSION = "2.23.0"
WORKER_BUNDLE = (
    INTEROP_DIR / "node_modules" / "livekit-client" / "dist" / "livekit-client.e2ee.worker.mjs"
)
# sha256 of dist/livekit-client.e2ee.worker.mjs in livekit-client 2.23.0 as published on npm
# (and locked in package-lock.json). A different bundle must be noticed, not silently used.
WORKER_SHA256 = "c945ad10b420d5afe504d009aa1ad4b723ce4e4b484b2fc7db8061715d66968c"
# sha256 of dist/livekit-client.fm.worker.mjs (the packet-trailer / frame-metadata worker,
# export "livekit-client/packet-trailer-worker") in livekit-client 2.23.0 as published.
FM_WORKER_BUNDLE = WORKER_BUNDLE.with_name("livekit-client.fm.worker.mjs")
FM_WORKER_SHA256 = "ec1df88fc19e5f73bf223b26692208124e442610dca6b713d3b87f65bf84c136"
# the @livekit/protocol that livekit-client 2.23.0 pins (and bundles): data_oracle.mjs takes
# livekit.EncryptedPacket from it, since livekit-client does not export its bundled copy
PROTOCOL_VERSION = "1.52.1"

Job = dict[str, Any]
Result = dict[str, Any]


class OracleError(RuntimeError):
    """The oracle process failed, timed out or printed something that is not a result."""


def node_binary() -> str | None:
    return os.environ.get("NODE") or shutil.which("node")


def node_available() -> str | None:
    """``None`` when the oracle can run, otherwise the reason it cannot."""
    node = node_binary()
    if node is None:
        return "node (Node.js >= 20) not found on PATH"
    try:
        proc = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {node}: {exc}"
    version = proc.stdout.strip().lstrip("v")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return f"cannot parse node version {proc.stdout!r}"
    if major < 20:
        return f"node {version} is too old (need >= 20)"
    pkg = INTEROP_DIR / "node_modules" / "livekit-client" / "package.json"
    if not pkg.is_file() or not WORKER_BUNDLE.is_file():
        return "livekit-client not installed: run `cd tests/interop && npm ci`"
    installed = json.loads(pkg.read_text(encoding="utf-8")).get("version")
    if installed != PINNED_VERSION:
        return f"livekit-client {installed} installed, {PINNED_VERSION} pinned: run `npm ci`"
    return None


def run_job(job: Job, timeout: float = 60) -> Result:
    """Run one oracle job (bounded by ``timeout`` seconds) and return its parsed result."""
    return _run_script(ORACLE, job, timeout)


def run_data_job(job: Job, timeout: float = 60) -> Result:
    """Run one data-packet / LKTS job (tests/interop/data_oracle.mjs; schema at its top),
    bounded by ``timeout`` seconds, and return its parsed result."""
    return _run_script(DATA_ORACLE, job, timeout)


def _run_script(script: Path, job: Job, timeout: float) -> Result:
    node = node_binary()
    if node is None:
        raise OracleError("node not found")
    job = dict(job)
    options = dict(job.get("options") or {})
    # the oracle's own global timeout fires first, so it can clean up its worker threads
    options.setdefault("timeout_ms", max(1000, int(timeout * 1000) - 2000))
    job["options"] = options
    try:
        proc = subprocess.run(
            [node, str(script)],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=INTEROP_DIR,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run kills the child
        raise OracleError(f"oracle did not finish within {timeout} s") from exc
    if proc.returncode != 0:
        raise OracleError(f"oracle exited {proc.returncode}: {proc.stderr.strip()[-4000:]}")
    try:
        result: Result = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise OracleError(f"oracle printed no JSON result: {proc.stdout[:500]!r}") from exc
    if len(result.get("results", [])) != len(job["ops"]):
        raise OracleError("oracle returned a different number of results than ops")
    return result


# --- job-building helpers ----------------------------------------------------------------


def key_spec(material: bytes | str) -> dict[str, str]:
    """A ``setKey`` key: str → passphrase (PBKDF2), bytes → raw key (HKDF)."""
    if isinstance(material, str):
        return {"passphrase": material}
    return {"raw_hex": material.hex()}


def set_key_op(
    peer: str, material: bytes | str, *, participant: str = "alice", index: int = 0
) -> dict[str, Any]:
    return {
        "op": "setKey",
        "peer": peer,
        "participant": participant,
        "key": key_spec(material),
        "index": index,
    }


def encrypt_op(
    peer: str,
    data: bytes,
    *,
    codec: str,
    keyframe: bool = True,
    ssrc: int = 1234,
    timestamp: int = 9000,
    participant: str = "alice",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "op": "encrypt",
        "peer": peer,
        "participant": participant,
        "codec": codec,
        "keyframe": keyframe,
        "ssrc": ssrc,
        "timestamp": timestamp,
        "data_hex": data.hex(),
        **extra,
    }


def decrypt_op(
    peer: str,
    data: bytes | None = None,
    *,
    codec: str,
    keyframe: bool = True,
    participant: str = "alice",
    data_from: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "op": "decrypt",
        "peer": peer,
        "participant": participant,
        "codec": codec,
        "keyframe": keyframe,
        **extra,
    }
    if data_from is not None:
        op["data_from"] = data_from
    else:
        op["data_hex"] = (data or b"").hex()
    return op


def ratchet_op(
    peer: str, *, participant: str = "alice", index: int | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {"op": "ratchet", "peer": peer, "participant": participant}
    if index is not None:
        op["index"] = index
    return op


def lk_encrypt(
    material: bytes | str,
    frames: list[dict[str, Any]],
    *,
    key_index: int = 0,
    ratchets: int = 0,
    seed: int = 1,
) -> list[Result]:
    """Seal ``frames`` (kwargs of :func:`encrypt_op` with ``data``) with livekit-client.

    Returns one result per frame (``data_hex``, ``iv_hex``, ``aad_hex``, ``send_count`` …).
    """
    ops: list[dict[str, Any]] = [set_key_op("a", material, index=key_index)]
    ops += [ratchet_op("a", index=key_index) for _ in range(ratchets)]
    first = len(ops)
    for f in frames:
        f = dict(f)
        ops.append(encrypt_op("a", f.pop("data"), **f))
    results: list[Result] = run_job({"seed": seed, "ops": ops})["results"]
    return results[first:]


def lk_decrypt(
    material: bytes | str,
    frames: list[dict[str, Any]],
    *,
    key_index: int = 0,
    ratchets: int = 0,
    sif_trailer: bytes | None = None,
) -> list[Result]:
    """Open ``frames`` (kwargs of :func:`decrypt_op` with ``data``) with livekit-client.

    Returns one result per frame: ``{"data_hex"}``, ``{"dropped": True}`` or ``{"error"}``.
    """
    ops: list[dict[str, Any]] = [set_key_op("b", material, index=key_index)]
    ops += [ratchet_op("b", index=key_index) for _ in range(ratchets)]
    if sif_trailer is not None:
        ops.append({"op": "setSifTrailer", "peer": "b", "hex": sif_trailer.hex()})
    first = len(ops)
    for f in frames:
        f = dict(f)
        ops.append(decrypt_op("b", f.pop("data"), **f))
    results: list[Result] = run_job({"ops": ops})["results"]
    return results[first:]


def decrypted(result: Result) -> bytes:
    """The plaintext of a decrypt result; raises if the library dropped or failed it."""
    if "data_hex" not in result:
        raise AssertionError(f"livekit-client did not deliver the frame: {result}")
    return bytes.fromhex(result["data_hex"])

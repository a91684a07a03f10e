"""The compiled hot path (``framecrypt._native``, issue 14) in the bench: which path a
contender runs on, and the ``limit`` contender (bare batch AES-GCM, no framing).

A contender's *path* is ``None`` (the default: what ``FRAMECRYPT_NATIVE`` selects, the
extension where it is built) or a kind of :func:`framecrypt.workers.native.using`
(``"python"``, ``"auto"``, ``"evp"``, ``"ipsec-mb"``): its key objects, engines and
batchers are made inside ``using(path)`` and every call it makes runs inside it too
(entered around each synchronous stretch, never across an ``await``: other contenders
prepare concurrently on the same loop)."""

from __future__ import annotations

import asyncio
import contextlib
from array import array
from contextlib import AbstractContextManager
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from framecrypt.bench.contenders.base import CHUNK_BYTES, Contender, by_stream, split_chunks
from framecrypt.bench.workloads import Op, Workload
from framecrypt.workers import native

__all__ = ["LIMIT_KEY", "Limit", "check_batch", "clear_bytes", "interleaved_chunks", "on_path",
           "path_unavailable"]

LIMIT_KEY = bytes(range(16))
_TAG = 16


def on_path(path: str | None) -> AbstractContextManager[None]:
    """``native.using(path)``, or nothing for the default path."""
    return native.using(path) if path else contextlib.nullcontext()


def path_unavailable(path: str | None) -> str | None:
    """Why ``path`` cannot run in this process (None: it can)."""
    if not path:
        return None
    try:
        with native.using(path):
            pass
    except ValueError as e:
        return str(e)[:300]
    return None


def clear_bytes(op: Op) -> int:
    """The AAD of the bare AES-GCM contenders: 1 byte for Opus, 3 else (as ``floor``)."""
    return 1 if op.codec == "opus" else 3


def interleaved_chunks(ops: list[Op], chunk: int, max_bytes: int) -> list[list[Op]]:
    """The ops of one segment in chunks of ≤ ``chunk`` frames and ≤ ``max_bytes`` per
    stream (participant, seal or open), the streams interleaved chunk by chunk (as the
    inline batch contender feeds them)."""
    per = [split_chunks(s, [o.plain_len for o in s], chunk, max_bytes)
           for s in by_stream(ops).values()]
    out: list[list[Op]] = []
    for row in range(max((len(p) for p in per), default=0)):
        out += [p[row] for p in per if row < len(p)]
    return out


# one gcm_batch call: (aad_len, lengths, concatenated payloads, bytes it must write)
_Call = tuple[int, "array[int]", bytes, int]


class Limit(Contender):
    """``framecrypt._native.gcm_batch`` over the workload's payloads: each frame's
    plaintext sealed with bare AES-GCM (IV = its index in the call, AAD = its first
    1 or 3 bytes), ciphertext and tag back to back, no framing, no per-frame Python.
    Chunks as the batch contenders (≤ ``chunk`` frames, ≤ 2 MB per stream); within a
    chunk one call per AAD length (Opus and video apart: order does not matter here);
    equal chunk inputs share one buffer, as the workload's frames do.
    Open ops are sealed too: the extension has no batch decrypt, and AES-GCM opening
    does the same CTR and GHASH work. Inputs are joined and the output buffer
    allocated while preparing (untimed): the hardware floor of a batch."""

    name = "limit"
    kind = "floor"
    paced = False

    def __init__(self, chunk: int, max_bytes: int) -> None:
        self.chunk = chunk
        self.max_bytes = max_bytes
        self.why: str | None = None
        self.gcm: Any = None
        self.backend = ""
        if native.NATIVE is None:
            self.why = f"the extension does not run ({native.info()['why']})"
        else:
            for backend, number in (("ipsec-mb", 2), ("evp", 1)):
                try:
                    self.gcm = native.NATIVE.AesGcm(LIMIT_KEY, number)
                except ValueError:
                    continue
                self.backend = backend
                break
            else:
                self.why = "no AES-GCM backend of the extension runs"
        self.description = (
            f"framecrypt._native.gcm_batch (AES-GCM by {self.backend or 'ipsec-mb'}"
            + ("" if self.backend in ("", "ipsec-mb") else ": ipsec-mb not available")
            + f"): bare AES-GCM of the same payloads, no framing, in chunks of ≤ {chunk} "
            "frames per stream; open ops sealed too (the hardware floor of a batch)")
        self.calls: dict[str, list[_Call]] = {}
        self.out: dict[str, bytearray] = {}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "backend": self.backend or None}

    def skip_reason(self, wl: Workload) -> str | None:
        return self.why or super().skip_reason(wl)

    async def prepare(self, wl: Workload) -> None:
        calls: list[_Call] = []
        # equal inputs share one buffer, as the workload's frames do (the size sweep
        # reuses a few dozen frames): the other contenders read those from cache, and a
        # floor that read cold copies instead would not be one
        same: dict[bytes, bytes] = {}
        for seg in wl.segments:
            for ch in interleaved_chunks(seg.ops, self.chunk, self.max_bytes):
                groups: dict[int, list[bytes]] = {}
                for op in ch:
                    groups.setdefault(clear_bytes(op), []).append(
                        op.data if op.enc else op.expect)
                for aad, payloads in groups.items():
                    lens = array("I", [len(p) for p in payloads])
                    want = sum(n - min(aad, n) + _TAG for n in lens)
                    inp = b"".join(payloads)
                    calls.append((aad, lens, same.setdefault(inp, inp), want))
        self.calls[wl.name] = calls
        self.out[wl.name] = bytearray(max((c[3] for c in calls), default=0))

    async def unprepare(self, wl: Workload) -> None:
        self.calls.pop(wl.name, None)
        self.out.pop(wl.name, None)

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        assert native.NATIVE is not None
        gcm_batch, gcm, out = native.NATIVE.gcm_batch, self.gcm, self.out[wl.name]
        bad = nb = 0
        for aad, lens, inp, want in self.calls[wl.name]:
            got = gcm_batch(gcm, lens, inp, out, aad)
            if verify:
                bad += check_batch(aad, lens, inp, out, got, want)
            nb += len(inp)
            if nb >= CHUNK_BYTES:
                nb = 0
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        return bad


def check_batch(aad: int, lens: array[int], inp: bytes, out: bytearray, got: int,
                want: int, few: int = 3) -> int:
    """Wrong frames among a few of one ``gcm_batch`` call (first, middle, last), each
    opened with cryptography's AESGCM; every frame counts wrong if the call wrote
    other than ``want`` bytes."""
    n = len(lens)
    if got != want:
        return n
    pick = {0, n // 2, n - 1}
    aes = AESGCM(LIMIT_KEY)
    wrong = i = o = 0
    for k, ln in enumerate(lens):
        ad = min(aad, ln)
        size = ln - ad + _TAG
        if k in pick:
            iv = k.to_bytes(4, "little") + bytes(8)
            try:
                ok = aes.decrypt(iv, bytes(out[o:o + size]), inp[i:i + ad]) == inp[i + ad:i + ln]
            except InvalidTag:
                ok = False
            wrong += not ok
        i += ln
        o += size
    return wrong

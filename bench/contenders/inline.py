"""The contenders in the calling process, on the event loop: bare AES-GCM (the floor)
and framecrypt inline, one call per frame, on the default, pure-Python or native path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from framecrypt import livekit, sframe
from framecrypt.bench.contenders.base import Contender, Record, split_chunks
from framecrypt.bench.contenders.native import on_path, path_unavailable
from framecrypt.bench.workloads import Op, Workload, material, passphrase, sframe_base

# --- bare AES-GCM: the floor ---------------------------------------------------------------


class Floor(Contender):
    name = "floor"
    kind = "floor"
    description = "bare cryptography AESGCM.encrypt/decrypt of the same payloads (the floor)"

    def __init__(self) -> None:
        self.aes = AESGCM(bytes(range(16)))
        self.items: dict[str, list[list[list[tuple[bool, bytes, bytes, bytes]]]]] = {}

    async def prepare(self, wl: Workload) -> None:
        segs = []
        for seg in wl.segments:
            items = []
            for j, op in enumerate(seg.ops):
                nonce = j.to_bytes(12, "big")
                clear = 3 if op.codec != "opus" else 1
                plain = op.expect if not op.enc else op.data
                aad, body = plain[:clear], plain[clear:]
                if not op.enc:
                    body = self.aes.encrypt(nonce, body, aad)
                items.append((op.enc, nonce, body, aad))
            segs.append(split_chunks(items, [o.plain_len for o in seg.ops]))
        self.items[wl.name] = segs

    async def unprepare(self, wl: Workload) -> None:
        self.items.pop(wl.name, None)

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        enc, dec = self.aes.encrypt, self.aes.decrypt
        for chunks in self.items[wl.name]:
            for chunk in chunks:
                for e, nonce, body, aad in chunk:
                    if e:
                        enc(nonce, body, aad)
                    else:
                        dec(nonce, body, aad)
                await asyncio.sleep(0)
        return 0


# --- framecrypt inline, one call per frame --------------------------------------------------------


class Inline(Contender):
    """One ``livekit``/``sframe`` protect/unprotect call per frame in the calling
    process. ``path`` None: the default path (``inline``); else every call runs inside
    ``native.using(path)`` (``inline-python``: the pure core; ``inline-native``: the
    extension). ``livekit`` caches its AES-GCM object per (key, native or not), so the
    per-call contenders cannot tell the extension's backends apart: the batch ones do."""

    name = "inline"
    kind = "inline"
    supports_storm = True

    def __init__(self, path: str | None = None, name: str = "inline") -> None:
        self.path = path
        self.name = name
        self.why = path_unavailable(path)
        what = {None: "the default path (FRAMECRYPT_NATIVE: the extension where built)",
                "python": "the pure-Python core (native.using('python'))",
                "auto": "the compiled extension (native.using('auto'))"}.get(
                    path, f"native.using({path!r})")
        self.description = ("framecrypt per call in the calling process (livekit.protect/"
                            f"unprotect, sframe.protect/unprotect), on the event loop; {what}")
        # the storm's cost is PBKDF2 on the loop, the same on every path: `inline` has it
        self.supports_storm = path is None
        self.items: dict[str, list[tuple[str, int, list[list[tuple[Any, ...]]]]]] = {}
        self.keys: dict[int, bytes] = {}
        self.storm_material: dict[int, bytes | str] = {}
        self.storm_keys: dict[int, bytes] = {}
        self.storm = False
        self._seg_fmts: list[tuple[str, int]] = []

    def _key(self, pidx: int) -> bytes:
        k = self.keys.get(pidx)
        if k is None:
            k = self.keys[pidx] = livekit.derive_key(material(pidx))
        return k

    def skip_reason(self, wl: Workload) -> str | None:
        if self.why:
            return self.why
        if wl.kind == "storm" and not self.supports_storm:
            return "the storm is PBKDF2 on the loop whatever the frame path: `inline` covers it"
        return super().skip_reason(wl)

    async def prepare(self, wl: Workload) -> None:
        self.storm = wl.kind == "storm"
        if self.storm:
            for i in range(wl.participants):
                self.storm_material[i] = passphrase(i)
                self.storm_keys[i] = livekit.derive_key(passphrase(i))
        segs = []
        for seg in wl.segments:
            items: list[tuple[Any, ...]] = []
            for op in seg.ops:
                if seg.fmt == "sframe":
                    items.append((op.enc, op.data, sframe_base(op.pidx), op.count))
                else:
                    items.append((op.enc, op.data, self._key(op.pidx), op.codec, op.keyframe,
                                  op.ssrc, op.ts, op.count))
            segs.append((seg.fmt, seg.suite,
                         split_chunks(items, [o.plain_len for o in seg.ops])))
        self.items[wl.name] = segs

    async def unprepare(self, wl: Workload) -> None:
        self.items.pop(wl.name, None)

    async def drive(self, wl: Workload, verify: bool = False) -> int:
        bad = 0
        expect = [o.expect for s in wl.segments for o in s.ops] if verify else []
        k = 0
        for fmt, suite, chunks in self.items[wl.name]:
            for chunk in chunks:
                with on_path(self.path):
                    k, b = self._chunk(fmt, suite, chunk, verify, expect, k)
                bad += b
                await asyncio.sleep(0)
        return bad

    def _chunk(self, fmt: str, suite: int, chunk: list[tuple[Any, ...]], verify: bool,
               expect: list[bytes], k: int) -> tuple[int, int]:
        """One chunk, synchronously: (next expect index, wrong results)."""
        bad = 0
        if fmt == "sframe":
            sp, su = sframe.protect, sframe.unprotect
            for e, data, base, ctr in chunk:
                if e:
                    out = sp(suite, base, 0, ctr, data)
                    if verify:
                        out = su(suite, base, out)[2]
                else:
                    out = su(suite, base, data)[2]
                if verify:
                    bad += out != expect[k]
                    k += 1
        else:
            lp, lu = livekit.protect, livekit.unprotect
            for e, data, key, codec, kf, ssrc, ts, cnt in chunk:
                if e:
                    out = lp(data, key=key, codec=codec, keyframe=kf, ssrc=ssrc,
                             timestamp=ts, send_count=cnt)
                    if verify:
                        out = lu(out, key=key, codec=codec, keyframe=kf)
                else:
                    out = lu(data, key=key, codec=codec, keyframe=kf)
                if verify:
                    bad += out != expect[k]
                    k += 1
        return k, bad

    def start_op(self, seg: int, op: Op, sched: float, record: Record) -> None:
        err = False
        try:
            with on_path(self.path):
                self._one(seg, op)
        except Exception:
            err = True
        record(sched, None, err)

    def _one(self, seg: int, op: Op) -> None:
        fmt, suite = self._seg_fmts[seg] if self._seg_fmts else ("livekit", 0)
        if self.storm:
            livekit.protect(op.data, key=self.storm_keys[op.pidx], codec=op.codec,
                            keyframe=op.keyframe, ssrc=op.ssrc, timestamp=op.ts,
                            send_count=op.count)
        elif fmt == "sframe":
            if op.enc:
                sframe.protect(suite, sframe_base(op.pidx), 0, op.count, op.data)
            else:
                sframe.unprotect(suite, sframe_base(op.pidx), op.data)
        elif op.enc:
            livekit.protect(op.data, key=self._key(op.pidx), codec=op.codec,
                            keyframe=op.keyframe, ssrc=op.ssrc, timestamp=op.ts,
                            send_count=op.count)
        else:
            livekit.unprotect(op.data, key=self._key(op.pidx), codec=op.codec,
                              keyframe=op.keyframe)

    def set_paced_workload(self, wl: Workload) -> None:
        self._seg_fmts = [(s.fmt, s.suite) for s in wl.segments]
        self.storm = wl.kind == "storm"

    def start_ratchet(self, pidx: int, done: Callable[[bool], None]) -> None:
        # on the event loop, as a user of the pure core would: 2 × PBKDF2 (100k iterations)
        m = self.storm_material[pidx]
        nxt = livekit.ratchet(m, kdf="pbkdf2")
        self.storm_material[pidx] = nxt
        self.storm_keys[pidx] = livekit.derive_key(nxt, kdf="pbkdf2")
        done(True)

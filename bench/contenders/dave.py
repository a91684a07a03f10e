"""DAVE contenders: the same Opus and video frames sealed and opened by framecrypt
(per call in this process, and the pool's columnar batch path) and by Discord's libdave
(dave-py) and davey, each called from Python.

The three are members of one call: a framecrypt member (:class:`~framecrypt.keys.
dave_group.DaveMember`), a davey member and a dave-py member, formed by framecrypt's
in-process voice gateway (:mod:`framecrypt.keys.dave_call`). Each seals as itself. Every
contender opens the frames framecrypt's member sealed in that round (its sender key is
what all three hold from the group), each with its own receiver (a nonce opens once).
framecrypt's sealing contenders seal under bench-only secrets (their nonces start at 1:
the framecrypt member's own stream, which the runner seals untimed for the openers, must
not reuse them) and open as the framecrypt member. Outputs are checked once, on the
first round: every frame each contender opened equals what the sender sealed
(:func:`framecrypt.dave.as_received`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from framecrypt import dave
from framecrypt.keys.dave_call import Gateway, LocalMember

from .dave_members import LIBDAVE_CODECS, DaveyMember, LibdaveMember

CHANNEL = 4242
FC_ID, DAVEY_ID, DAVEPY_ID = 1001, 1002, 1003


@dataclass
class Call:
    """The three members of the bench's call, in one epoch."""

    fc: LocalMember
    davey: DaveyMember
    davepy: LibdaveMember

    @property
    def fc_secret(self) -> bytes:
        return self.fc.member.base_secret(FC_ID)

    @property
    def epoch(self) -> int:
        return self.fc.changes[-1].epoch


def form_call() -> Call:
    gw = Gateway(CHANNEL)
    call = Call(LocalMember(FC_ID, CHANNEL), DaveyMember(DAVEY_ID, CHANNEL),
                LibdaveMember(DAVEPY_ID, CHANNEL))
    gw.change(add=[call.davey, call.davepy, call.fc])
    return call


@dataclass(frozen=True)
class Workload:
    name: str
    codec: str
    frames: tuple[bytes, ...]


def workloads(count: int) -> list[Workload]:
    """Real encoded frames: Opus 20 ms packets and VP8 / H.264 video (framecrypt.samples)."""
    from framecrypt import samples

    out = [Workload("opus", "opus", tuple(f.data for f in samples.audio(count)))]
    for codec in ("vp8", "h264"):
        out.append(Workload(codec, codec,
                            tuple(f.data for f in samples.video(codec, min(count, 120)))))
    return out


class Contender:
    name = ""

    async def start(self, call: Call) -> None: ...

    async def close(self) -> None: ...

    async def seal(self, wl: Workload) -> list[bytes]:
        raise NotImplementedError

    async def open(self, wl: Workload, sealed: Sequence[bytes]) -> list[bytes]:
        raise NotImplementedError


class FramecryptPerCall(Contender):
    """framecrypt.dave.Sender / Receiver, one call per frame (``path``: the default,
    the extension's AES-GCM where built, or ``python``: cryptography's)."""

    def __init__(self, path: str = "default") -> None:
        self.name = "framecrypt-percall" + ("" if path == "default" else f"-{path}")
        self.path = path
        self.receivers: dict[str, dave.Receiver] = {}

    def _ctx(self) -> Any:
        from contextlib import nullcontext

        from framecrypt.workers import native

        return native.pure() if self.path == "python" else nullcontext()

    async def start(self, call: Call) -> None:
        import secrets

        with self._ctx():  # seals under a bench-only secret (see the module docstring)
            self.sender = dave.Sender(dave.KeyRatchet(secrets.token_bytes(16)))
            self.secret = call.fc_secret

    async def seal(self, wl: Workload) -> list[bytes]:
        with self._ctx():
            seal = self.sender.seal
            return [seal(wl.codec, f) for f in wl.frames]

    async def open(self, wl: Workload, sealed: Sequence[bytes]) -> list[bytes]:
        with self._ctx():
            r = self.receivers.get(wl.name)
            if r is None:
                r = self.receivers[wl.name] = dave.Receiver()
                r.transition_to_key_ratchet(dave.KeyRatchet(self.secret), time.monotonic())
            now, audio = time.monotonic(), wl.codec == "opus"
            return [r.open(s, now, audio) for s in sealed]


class FramecryptPoolBatch(Contender):
    """framecrypt.Pool(format="dave"): one FrameBatch per workload (built untimed),
    ``workers`` shm workers."""

    def __init__(self, workers: int) -> None:
        self.name = f"framecrypt-pool-batch-{workers}w"
        self.workers = workers
        self.pool: Any = None

    async def start(self, call: Call) -> None:
        import secrets

        from framecrypt import Pool

        self.pool = Pool(workers=self.workers, transport="shm", format="dave")
        await self.pool.start()
        await self.pool.set_dave_key("bench-sender", 1, secrets.token_bytes(16))
        self.epoch, self.secret = call.epoch, call.fc_secret
        self.opened: set[str] = set()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    def _batch(self, wl: Workload, frames: Sequence[bytes]) -> Any:
        from framecrypt.batch import FrameBatch

        return FrameBatch.of(list(frames), wl.codec)

    async def seal(self, wl: Workload) -> list[bytes]:
        res = await self.pool.encrypt_batch("bench-sender", self._batch(wl, wl.frames))
        return list(res)

    async def open(self, wl: Workload, sealed: Sequence[bytes]) -> list[bytes]:
        who = f"fc-{wl.name}"
        if who not in self.opened:
            await self.pool.set_dave_key(who, self.epoch, self.secret)
            self.opened.add(who)
        res = await self.pool.decrypt_batch(who, self._batch(wl, sealed))
        return list(res)


class DavePy(Contender):
    """Discord's libdave through dave-py: Encryptor.encrypt / Decryptor.decrypt."""

    name = "dave-py"

    async def start(self, call: Call) -> None:
        m = call.davepy.m
        self.m = m
        self.enc = m.Encryptor()
        self.enc.set_key_ratchet(call.davepy.s.get_key_ratchet(str(DAVEPY_ID)))
        self.session = call.davepy.s
        self.decs: dict[str, Any] = {}

    async def seal(self, wl: Workload) -> list[bytes]:
        media = self.m.MediaType.audio if wl.codec == "opus" else self.m.MediaType.video
        enc, codec = self.enc.encrypt, LIBDAVE_CODECS[wl.codec]
        return [enc(media, codec, f) for f in wl.frames]

    async def open(self, wl: Workload, sealed: Sequence[bytes]) -> list[bytes]:
        dec = self.decs.get(wl.name)
        if dec is None:
            dec = self.decs[wl.name] = self.m.Decryptor()
            dec.transition_to_key_ratchet(self.session.get_key_ratchet(str(FC_ID)))
        media = self.m.MediaType.audio if wl.codec == "opus" else self.m.MediaType.video
        d = dec.decrypt
        return [d(media, s) for s in sealed]


class Davey(Contender):
    """davey (Rust, OpenMLS): DaveSession.encrypt / decrypt. One session holds one
    receiver per sender, so the workloads' frames are opened in one nonce sequence."""

    name = "davey"

    async def start(self, call: Call) -> None:
        self.m, self.s = call.davey.m, call.davey.s

    async def seal(self, wl: Workload) -> list[bytes]:
        media = self.m.MediaType.audio if wl.codec == "opus" else self.m.MediaType.video
        enc, codec = self.s.encrypt, getattr(self.m.Codec, wl.codec)
        return [bytes(enc(media, codec, f)) for f in wl.frames]

    async def open(self, wl: Workload, sealed: Sequence[bytes]) -> list[bytes]:
        media = self.m.MediaType.audio if wl.codec == "opus" else self.m.MediaType.video
        d = self.s.decrypt
        return [d(FC_ID, media, s) for s in sealed]


def contenders(workers: Sequence[int]) -> list[Contender]:
    from .dave_batch import FramecryptBatchLoop, FramecryptPoolPipelined

    out: list[Contender] = [FramecryptPerCall(), FramecryptPerCall("python"),
                            FramecryptBatchLoop()]
    out += [FramecryptPoolBatch(w) for w in workers]
    out += [FramecryptPoolPipelined(w) for w in workers]
    return [*out, DavePy(), Davey()]

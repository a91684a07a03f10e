"""The batch engine a crypto worker runs: per-participant contexts, key operations,
and sealing/opening columnar segments of frames into the reply buffer.

Pure (no sockets, no clocks, no processes): the worker process feeds it messages, the
broker's inline path and the ``inline`` transport call it directly. DAVE receivers'
epoch transitions are timed by ``clock``, which the worker service sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from cryptography.exceptions import InvalidTag

from framecrypt.errors import (
    AuthenticationFailed,
    CounterExhausted,
    DroppedFrame,
    FramecryptError,
    KeyInvalidated,
    MalformedFrame,
    ReplayedFrame,
    UnknownKey,
)
from framecrypt.transports import wire
from framecrypt.workers import native, native_dave, native_loop, native_sframe
from framecrypt.workers.dave.contexts import DAVE_OPS, DaveParticipant, SealedTooBig
from framecrypt.workers.livekit import frame as lkframe
from framecrypt.workers.livekit.codecs import sealed_keyframe
from framecrypt.workers.livekit.cryptor import CryptorOptions, ParticipantCryptor
from framecrypt.workers.livekit.events import KeyRatcheted
from framecrypt.workers.livekit.kdf import Kdf, resolve
from framecrypt.workers.livekit.keyring import KeySet
from framecrypt.workers.sframe.context import ReceiverContext, SFrameKey
from framecrypt.workers.sframe.ratchet import next_base_key

U32 = 0xFFFFFFFF

REPLY_SLACK = 64  # reply bytes reserved per sealed frame beyond size + size // 64


def reply_capacity(size: int) -> int:
    """Reply bytes reserved for sealing a ``size``-byte frame (trailer, H.26x growth)."""
    return size + REPLY_SLACK + size // 64


def reply_size(op: int, count: int, nbytes: int) -> int:
    """Reply bytes reserved for a columnar batch of ``count`` frames, ``nbytes`` in all
    (``sum(reply_capacity(size))`` bounds what sealing writes, without H.26x growth)."""
    return nbytes + count * REPLY_SLACK + nbytes // 64 if op == wire.OP_ENCRYPT else nbytes


_NO_FAST_PATH: list[int | None] = [None] * 512

STATUS_OF: dict[type[FramecryptError], int] = {
    AuthenticationFailed: wire.ST_AUTH,
    UnknownKey: wire.ST_UNKNOWN_KEY,
    MalformedFrame: wire.ST_MALFORMED,
    KeyInvalidated: wire.ST_KEY_INVALID,
    DroppedFrame: wire.ST_DROPPED,
    ReplayedFrame: wire.ST_REPLAYED,
    CounterExhausted: wire.ST_COUNTER,
}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What an engine needs of the pool settings (picklable, msgpack-able as a dict)."""

    format: str = "livekit"  # livekit | jitsi | sframe | dave
    iv: str = "counter"  # counter | livekit
    ratchet_window: int = 8
    failure_tolerance: int = 10
    keyring_size: int = 16
    ratchet_salt: bytes = b"LKFrameEncryptionKey"
    sif_trailer: bytes = b""
    suite: int = 4
    replay_window: int = 128

    def as_wire(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> EngineConfig:
        return cls(**{k: d[k] for k in cls.__slots__ if k in d})


@dataclass
class Participant:
    name: str
    cryptor: ParticipantCryptor | None = None  # livekit / jitsi
    send_keys: dict[int, SFrameKey] = field(default_factory=dict)  # sframe, by KID
    send_kid: int = 0
    materials: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # sframe
    receiver: ReceiverContext | None = None
    dave: DaveParticipant | None = None

    def __repr__(self) -> str:
        return f"Participant({self.name!r})"


class Engine:
    """Participants by index, key operations, batches. Counts what it did."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.jitsi = config.format == "jitsi"
        self.sframe = config.format == "sframe"
        self.dave = config.format == "dave"  # workers/dave/contexts.py, native_dave.py
        self.clock: Callable[[], float] = float  # 0.0 until workers/service.py sets one
        self.participants: dict[int, Participant] = {}
        self.events: list[list[Any]] = []
        self.counts = {"frames": 0, "errors": 0, "internal_errors": 0}
        # clear-header bytes per (codec id, keyframe) when fixed; None = H.26x (NAL scan)
        self._fixed: list[tuple[int | None, int | None]] = [
            (lkframe._fixed_clear(c, False, self.jitsi), lkframe._fixed_clear(c, True, self.jitsi))
            for c in wire.CODECS
        ]
        # the same, flat: [codec id << 1 | keyframe] for every byte value a codec may have
        self._fixed_flat: list[int | None] = [None] * 512
        for cid, pair in enumerate(self._fixed):
            self._fixed_flat[cid << 1], self._fixed_flat[cid << 1 | 1] = pair
        self._options = CryptorOptions(
            ratchet_window=config.ratchet_window,
            failure_tolerance=-1 if self.jitsi else config.failure_tolerance,
            keyring_size=config.keyring_size,
            ratchet_salt=config.ratchet_salt,
            sif_trailer=config.sif_trailer or None,
            jitsi=self.jitsi,
        )
        self._tolerant = self._options.failure_tolerance >= 0
        # the IV scheme (workers/livekit/frame.py iv_word): "counter", or the format's own
        self._iv = "counter" if config.iv == "counter" else ("jitsi" if self.jitsi else
                                                             "livekit")
        self._sif = self._options.sif_trailer or b""
        # the native loop: the clear rule of every (codec id << 1 | keyframe) byte pair,
        # the IV scheme's number, and the 256-entry key tables by participant
        self._rules = native_loop.rules(self.jitsi) if native.active() and not self.dave \
            else b""
        self._native_run: Any = None if not native.active() else (
            native_dave.run if self.dave else native_sframe.run if self.sframe
            else native_loop.run)
        self._scheme = ("counter", "livekit", "jitsi").index(self._iv)
        self._tables: dict[int, tuple[Any, int, tuple[Any, ...]]] = {}  # native_loop.key_table
        native.announce()

    def __repr__(self) -> str:
        return f"Engine({self.config.format}, participants={len(self.participants)})"

    # --- key operations --------------------------------------------------------------

    def _participant(self, pidx: int, name: str = "") -> Participant:
        p = self.participants.get(pidx)
        if p is None:
            p = Participant(name or str(pidx))
            if self.dave:
                p.dave = DaveParticipant()
            elif self.sframe:
                p.receiver = ReceiverContext(self.config.suite,
                                             replay_window=self.config.replay_window)
            else:
                p.cryptor = ParticipantCryptor(self._options)
            self.participants[pidx] = p
        return p

    def _kdf(self, kdf: str | None, material: bytes | str) -> tuple[bytes, Kdf]:
        if self.jitsi:
            raw, _ = resolve(material, "hkdf", self.config.ratchet_salt)
            return raw, Kdf.jitsi()
        return resolve(material, kdf, self.config.ratchet_salt)

    def control(self, op: str, args: list[Any], tick: Callable[[], None] | None = None
                ) -> list[Any]:
        """Apply one key operation; returns the ACK payload, which never holds key
        material: ``keyset`` -> [kdf algorithm], ``ratchet`` -> [generation], others
        -> []. Raises FramecryptError (or TypeError/ValueError on malformed args).
        ``tick`` runs after every derivation (a keyset of generation g ratchets g
        times, each a PBKDF2 for passphrases): the worker's heartbeats go on."""
        if op == "keyset":
            pidx, name, index, material, kdf, generation, make_current = args
            return self._keyset(pidx, name, index, material, kdf, generation, make_current,
                                tick)
        if op == "ratchet":
            pidx, index = args
            return [self._ratchet(pidx, index)]
        if op == "ratchet_to":  # follow a receiver ratchet a worker made (inline engine)
            pidx, index, generation = args
            g = self._generation(pidx, index)
            while g is not None and g < generation:
                g = self._ratchet(pidx, index)
            p = self.participants.get(pidx)
            if g == generation and p is not None and p.cryptor is not None:
                p.cryptor.ring.current_index = p.cryptor.ring.slot(index)
            return []
        if op == "remove":
            (pidx,) = args
            self.participants.pop(pidx, None)
            self._tables.pop(pidx, None)
            return []
        if op == "replay_floor":  # SFrame receiver state handed over by the broker
            pidx, floors = args
            p = self.participants.get(pidx)
            if p is not None and p.dave is not None:
                for kid, ctr in floors:
                    p.dave.apply_floor(int(kid), int(ctr), self.clock())
            if p is not None and p.receiver is not None:
                for kid, ctr in floors:
                    if int(kid) in p.receiver:
                        p.receiver.raise_replay_floor(int(kid), int(ctr))
            return []
        if op in DAVE_OPS and self.dave:  # a sender's base secret in an epoch, passthrough
            p = self._participant(args[0], args[1])
            assert p.dave is not None
            return p.dave.control(op, args[2:], self.clock())
        raise ValueError(f"unknown control op {op!r}")

    def _generation(self, pidx: int, index: int) -> int | None:
        p = self.participants.get(pidx)
        if p is None:
            return None
        if self.sframe:
            return p.materials[index][1] if index in p.materials else None
        assert p.cryptor is not None
        ks = p.cryptor.ring.get(index)
        return None if ks is None else ks.generation

    def _keyset(self, pidx: int, name: str, index: int, material: bytes | str, kdf: str | None,
                generation: int, make_current: bool,
                tick: Callable[[], None] | None = None) -> list[Any]:
        """Set ``material`` ratcheted ``generation`` steps at ``index``."""
        if not isinstance(generation, int) or not 0 <= generation <= 1 << 16:
            raise ValueError("bad generation")
        p = self._participant(pidx, name)
        if self.sframe:
            base = material.encode() if isinstance(material, str) else bytes(material)
            for _ in range(generation):
                base = next_base_key(self.config.suite, base)
                if tick is not None:
                    tick()
            p.send_keys[index] = SFrameKey.derive(self.config.suite, base, index)
            p.materials[index] = (base, generation)
            if make_current:
                p.send_kid = index
            assert p.receiver is not None
            p.receiver.add_key(index, base)
            return ["hkdf"]
        raw, k = self._kdf(kdf, material)
        ks = KeySet.derive(raw, k)
        for _ in range(generation):
            if tick is not None:
                tick()
            ks = ks.ratcheted()
        assert p.cryptor is not None
        p.cryptor.set_keyset(ks, index, make_current=make_current)
        return [k.algorithm]

    def _ratchet(self, pidx: int, index: int) -> int:
        p = self.participants.get(pidx)
        if p is None:
            raise UnknownKey(index)
        if self.sframe:
            if index not in p.materials:
                raise UnknownKey(index)
            base, gen = p.materials[index]
            current = p.send_kid == index
            self._keyset(pidx, p.name, index, base, None, 1, current)
            p.materials[index] = (p.materials[index][0], gen + 1)
            return gen + 1
        assert p.cryptor is not None
        p.cryptor.ratchet(index)
        p.cryptor.events()  # the broker learns of it from this ACK
        ks = p.cryptor.ring.get(index)
        assert ks is not None
        return ks.generation

    # --- frames -----------------------------------------------------------------------

    def _sender(self, pidx: int, ssrc: int, ts: int,
                counter: int) -> tuple[SFrameKey | None, Any, bytes]:
        """What sealing needs: the SFrame key, or the AES-GCM object and the packed
        ``IV ‖ 0x0C ‖ KID`` trailer. Typed errors for a missing key or counter."""
        p = self.participants.get(pidx)
        if p is None:
            raise UnknownKey(0)
        if self.sframe:
            key = p.send_keys.get(p.send_kid)
            if key is None:
                raise UnknownKey(p.send_kid)
            if counter > key.ctr_limit:
                raise CounterExhausted(p.send_kid)
            return key, None, b""
        cryptor = p.cryptor
        assert cryptor is not None
        index = cryptor.ring.current_index
        ks = cryptor.ring.get(index)
        if ks is None:
            raise UnknownKey(index)
        if self._iv == "counter" and counter > U32:
            raise CounterExhausted(index)
        return None, ks.aead, lkframe.trailer(self._iv, ssrc, ts, counter, index)

    def _dave_of(self, pidx: int) -> DaveParticipant:
        p = self.participants.get(pidx)
        if p is None or p.dave is None:
            raise UnknownKey(0)
        return p.dave

    def seal_into(self, pidx: int, data: memoryview, codec: str, keyframe: bool, ssrc: int,
                  ts: int, counter: int, out: memoryview) -> int:
        if self.dave:
            sealed = self._dave_of(pidx).seal(counter, codec, data)
            if len(sealed) > len(out):  # (the caller spills it; the nonce stays used)
                raise SealedTooBig(sealed)
            out[: len(sealed)] = sealed
            return len(sealed)
        key, aead, trailer = self._sender(pidx, ssrc, ts, counter)
        if key is not None:
            if key.ciphertext_length(counter, len(data)) > len(out):
                raise ValueError("output region too small")  # (the caller spills it)
            return key.protect_into(counter, data, out)
        return lkframe.seal_into(aead, data, codec, keyframe, trailer, out, self.jitsi)

    def seal(self, pidx: int, data: bytes, codec: str, keyframe: bool, ssrc: int, ts: int,
             counter: int) -> bytes:
        """Like :meth:`seal_into` but returns bytes (the broker's inline path)."""
        if self.dave:
            return self._dave_of(pidx).seal(counter, codec, data)
        key, aead, trailer = self._sender(pidx, ssrc, ts, counter)
        if key is not None:
            return key.protect(counter, data)
        return lkframe.seal_trailer(aead, data, codec, keyframe, trailer, self.jitsi)

    def open(self, pidx: int, data: memoryview, codec: str, keyframe: bool) -> bytes:
        if self.dave:
            return self._dave_of(pidx).open(data, codec, self.clock())
        p = self.participants.get(pidx)
        if p is None:
            raise UnknownKey(0)
        if self.sframe:
            assert p.receiver is not None
            return p.receiver.unprotect(data)[2]
        cryptor = p.cryptor
        assert cryptor is not None
        try:
            # (the type comes from the frame; the flag is a checked hint, tried second)
            return cryptor.decrypt(bytes(data), codec=codec, keyframe=keyframe)
        finally:
            for ev in cryptor.events():
                if isinstance(ev, KeyRatcheted) and ev.on_decrypt:
                    self.events.append(["ratcheted", pidx, ev.key_index, ev.generation])
                else:
                    self.events.append([type(ev).__name__, pidx,
                                        getattr(ev, "key_index", -1)])

    def replay_floors(self, pidx: int) -> list[list[int]]:
        """SFrame: ``[[kid, highest counter opened], …]`` of a participant (for the
        broker, which hands them to the next worker if the participant moves)."""
        p = self.participants.get(pidx)
        if p is not None and p.dave is not None:
            return p.dave.floors()
        if p is None or p.receiver is None:
            return []
        return [[kid, ctr] for kid, ctr in p.receiver.highest_accepted().items()]

    def _send_key(self, pidx: int) -> tuple[Any, int]:
        """(AESGCM, key index) a participant seals with now, or (None, 0)."""
        p = self.participants.get(pidx)
        if p is None or p.cryptor is None:
            return None, 0
        index = p.cryptor.ring.current_index
        ks = p.cryptor.ring.get(index)
        return (ks.aead, index) if ks is not None else (None, 0)

    def try_open(self, pidx: int, data: bytes, codec: str, keyframe: bool) -> bytes | None:
        """Open without touching any state (no ratchet, no failure counts, no events):
        the broker's inline fast path. None = hand the frame to a worker."""
        p = self.participants.get(pidx)
        if p is None or p.cryptor is None:
            return None
        cryptor = p.cryptor
        opts = cryptor.options
        if opts.strip_lkts and codec != "opus" and not opts.jitsi and data[-4:] == b"LKTS":
            return None
        if not data:
            return b""
        if opts.sif_trailer and data.endswith(opts.sif_trailer):
            return None
        if len(data) < lkframe.OVERHEAD:
            return None
        kid = data[-1]
        tol = opts.failure_tolerance
        if tol >= 0 and cryptor.ring.failures(kid) > 0:
            return None  # let the worker keep its failure counts right
        ks = cryptor.ring.get(kid)
        if ks is None:
            return None
        try:
            return lkframe.open_frame(ks.aead, data, codec=codec, keyframe=keyframe,
                                      jitsi=self.jitsi)
        except FramecryptError:
            return None

    def output_buffer(self, op: int, count: int, nbytes: int) -> bytearray:
        """A reply buffer for :meth:`run_packed` of ``count`` frames, ``nbytes`` in all.
        On the native path it is not zeroed up front: the loop writes outputs back to
        back from its start and clears the rest (``zero_tail``), so no old heap bytes
        stay readable and no memset of the whole buffer is paid."""
        size = reply_size(op, count, nbytes)
        if self._native_run is not None and not self.sframe:  # (native_loop, native_dave)
            out: bytearray = native.NATIVE.new_output(size)
            return out
        return bytearray(size)

    def run_packed(self, op: int, pidx: int, counter0: int, epoch: int,
                   lengths: Sequence[int], codecs: Sequence[int], flags: Sequence[int],
                   ssrcs: Sequence[int], timestamps: Sequence[int], inp: memoryview,
                   out: memoryview | None, tick: Callable[[], None] | None = None, *,
                   stateless: bool = False, spill: Overflow | None = None
                   ) -> tuple[bytearray, list[bytes], int]:
        """A columnar batch of one participant and one op: payloads back to back in
        ``inp``, outputs written back to back into ``out`` (result offsets are into
        ``out``; what does not fit goes to the overflow list, ``ST_INLINE``). Sealing
        uses counters ``counter0, counter0 + 1, …`` and, when ``epoch >= 0``, the
        epoch in place of each timestamp. ``stateless``: open only what opens without
        touching any state; the rest is marked ``ST_RETRY`` (the broker's inline pass).
        ``tick`` is called after each frame on the full path (a fast-path frame costs
        at most a few ms even at the largest frame size).
        Returns the result records, the overflow (``spill``, shared by several calls
        when given) and how many bytes of ``out`` it used.
        """
        count = len(lengths)
        res = bytearray(wire.RES.size * count)
        if spill is None:
            spill = Overflow()
        if self._native_run is not None and out is not None:
            o = self._native_run(self, op, pidx, counter0, epoch, lengths, codecs, flags,
                                 ssrcs, timestamps, inp, out, tick, stateless, spill, res)
            self.counts["frames"] += count
            return res, spill.parts, o
        pack = wire.RES.pack_into
        fixed = self._fixed_flat
        out_len = len(out) if out is not None else -1
        fast = out is not None and not self.sframe and not self.dave and \
            self.config.iv == "counter"
        enc = op == wire.OP_ENCRYPT
        tss: Iterable[int] = repeat(epoch) if enc and epoch >= 0 else timestamps
        seal_aead: Any = None
        index = 0
        ring: Any = None
        if fast and enc:
            seal_aead, index = self._send_key(pidx)
            fast = seal_aead is not None and counter0 + count - 1 <= U32
        elif fast:
            p = self.participants.get(pidx)
            ring = p.cryptor.ring if p is not None and p.cryptor is not None else None
            fast = ring is not None and not self._sif
        encrypt_into: Any = seal_aead.encrypt_into if seal_aead is not None else None
        tpack = lkframe.TRAILER.pack_into  # the counter scheme: the IV word is ``ctr``
        tolerant = self._tolerant
        last_kid = -1
        decrypt_into: Any = None
        if not fast:
            fixed = _NO_FAST_PATH
        o_mv: Any = out  # (None only when not fast: then no frame takes the fast path)
        i = o = k = 0
        ctr = counter0
        infer = native_loop.NO_INFER if enc or not fast else native_loop.infer(self.jitsi)
        for ln, cid, fl, ssrc, ts in zip(lengths, codecs, flags, ssrcs, tss, strict=False):
            # codec ids and flags are bytes: the index is < 512; a receiver reads the
            name = infer[cid]  # frame type from the frame (its first bytes), not the flag
            kf = fl & 1 if name is None else sealed_keyframe(
                name, inp[i : i + (ln if ln < 10 else 10)])
            nclear = fixed[cid << 1 | kf]
            # (an empty frame takes the full path: it passes through unsealed)
            if nclear is not None and nclear <= ln and ln and o + ln + 30 <= out_len:
                out = o_mv
                if enc:
                    h = o + nclear
                    e = h + ln - nclear + 16
                    out[o:h] = inp[i : i + nclear]
                    tpack(out, e, ssrc, ts, ctr, 12, index)
                    encrypt_into(out[e : e + 12], inp[i + nclear : i + ln], out[o:h],
                                 out[h:e])
                    pack(res, k, 0, o, ln + 30)
                    o = e + 14
                    i += ln
                    k += 12
                    ctr += 1
                    continue
                stop = i + ln
                if ln >= nclear + 30 and inp[stop - 2] == 12:
                    # (an "LKTS" trailer cannot get here: its byte -2 is "T", not 12)
                    kid = inp[stop - 1]
                    if kid != last_kid:
                        last_kid = kid
                        ks = ring.get(kid)
                        decrypt_into = None if ks is None or (
                            tolerant and ring.failures(kid)) else ks.aead.decrypt_into
                    if decrypt_into is not None:
                        h = o + nclear
                        e = h + ln - nclear - 30
                        try:
                            decrypt_into(inp[stop - 14 : stop - 2], inp[i + nclear : stop - 14],
                                         inp[i : i + nclear], out[h:e])
                        except InvalidTag:
                            pass  # the full path ratchets, counts and reports
                        else:
                            out[o:h] = inp[i : i + nclear]
                            pack(res, k, 0, o, e - o)
                            o = e
                            i = stop
                            k += 12
                            continue
            region = out[o:] if out is not None else None
            status, off, n = self._full(op, pidx, cid, fl, ssrc, ts, ctr, inp[i : i + ln],
                                        region, spill, stateless)
            last_kid = -1  # the full path may have changed the keyring
            if status == wire.ST_OK:
                off += o
                o += n
            pack(res, k, status, off, n)
            i += ln
            k += 12
            ctr += 1
            if tick is not None:
                tick()
        self.counts["frames"] += count
        return res, spill.parts, o

    def _full(self, op: int, pidx: int, codec_id: int, flags: int, ssrc: int, ts: int,
              counter: int, data: memoryview, region: memoryview | None, spill: Overflow,
              stateless: bool) -> tuple[int, int, int]:
        """One frame on the full path: ``(status, offset, length)``; the output goes to
        ``region`` (offset into it) when it fits, else to ``spill`` (``ST_INLINE``,
        offset into the overflow blob). Errors become status codes; no input raises."""
        try:
            if codec_id >= len(wire.CODECS):
                raise MalformedFrame("bad frame fields")
            codec = wire.CODECS[codec_id]
            kf = bool(flags & wire.FLAG_KEYFRAME)
            if op == wire.OP_ENCRYPT:
                if region is not None:
                    try:
                        return wire.ST_OK, 0, self.seal_into(pidx, data, codec, kf, ssrc, ts,
                                                             counter, region)
                    except SealedTooBig as e:  # DAVE: sealed (its nonce used), too big for region
                        return wire.ST_INLINE, spill.add(e.sealed), len(e.sealed)
                    except ValueError as e:  # region too small (H.26x growth)
                        if isinstance(e, FramecryptError):
                            raise
                sealed = self.seal(pidx, bytes(data), codec, kf, ssrc, ts, counter)
                return wire.ST_INLINE, spill.add(sealed), len(sealed)
            if op != wire.OP_DECRYPT:
                raise MalformedFrame("bad op")
            if stateless:
                got = self.try_open(pidx, bytes(data), codec, kf)
                if got is None:
                    return wire.ST_RETRY, 0, 0
                pt = got
            else:
                pt = self.open(pidx, data, codec, kf)
            n = len(pt)
            if region is not None and n <= len(region):
                region[:n] = pt
                return wire.ST_OK, 0, n
            return wire.ST_INLINE, spill.add(pt), n
        except FramecryptError as e:
            status = STATUS_OF.get(type(e), wire.ST_INTERNAL)
            if status == wire.ST_INTERNAL:
                for cls, code in STATUS_OF.items():
                    if isinstance(e, cls):
                        status = code
                        break
            self.counts["errors"] += 1
            arg = getattr(e, "kid", getattr(e, "ctr", 0))
            return status, arg if isinstance(arg, int) and 0 <= arg <= U32 else 0, 0
        except Exception:  # a bug must not kill the worker: count it, carry on
            self.counts["internal_errors"] += 1
            return wire.ST_INTERNAL, 0, 0


class Overflow:
    """Outputs that did not fit their reply region, concatenated in the reply."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> int:
        off = self.size
        self.parts.append(data)
        self.size += len(data)
        return off

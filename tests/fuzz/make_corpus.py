"""Writes the seed corpus of the libFuzzer targets in tests/fuzz/ (deterministic).

    .venv/bin/python tests/fuzz/make_corpus.py [OUTDIR]    # default tests/fuzz/corpus

Frames are made with the pure-Python reference (framecrypt.workers.livekit.frame and
.h26x), never with the C code under test:

  corpus/fuzz_h26x/     Annex B streams (H.264 / H.265 access units with 3- and 4-byte
                        start codes, > 64 NAL units, leading data), escaped and unescaped
                        bodies
  corpus/fuzz_lk_open/  4 parameter bytes + a frame sealed by the reference with the
                        fuzz key (fuzz_common.h: fuzz_key), so fc_lk_open's success path
                        is in the corpus from the start
  corpus/fuzz_lk_seal/  16 parameter bytes (rule, key, backend, capacity, trailer) +
                        a plaintext frame
  corpus/fuzz_sframe/   24 parameter bytes + metadata + an SFrame frame sealed by the
                        reference (framecrypt.workers.sframe: header.encode_header,
                        aead.make_aead) with the fuzz key and salt of that seed byte
                        (fuzz_sframe.c: sf_key / sf_salt), every suite 1..8, KIDs and CTRs
                        of every header length, metadata past 256 bytes
  corpus/fuzz_dave/     10 parameter bytes + a frame, for each of fuzz_dave.c's modes:
                        DAVE frames sealed by the reference (framecrypt.workers.dave.frame
                        with a cryptography AESGCM of fuzz_key(16), never the C path):
                        real H.264 / H.265 / VP8 frames (framecrypt.samples, 96x64) and
                        Opus packets, nonces of 1 to 5 ULEB128 bytes, up to 60 clear
                        ranges; the plaintext frames for the seal, H.26x and ranges modes
                        (first nonces at the generation edge included)

The parameter layouts are documented at the top of fuzz_lk_open.c / fuzz_lk_seal.c /
fuzz_sframe.c / fuzz_dave.c. The fuzz_dave seeds need PyAV (framecrypt.samples: the
frames are deterministic for a given PyAV / FFmpeg build).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from framecrypt.workers.livekit import frame, h26x

HERE = Path(__file__).resolve().parent
TARGETS = ("fuzz_h26x", "fuzz_lk_open", "fuzz_lk_seal", "fuzz_sframe", "fuzz_dave")

# rule classes (p[0] bits 0-1) and the fixed rules of the codecs (frame._FIXED)
CLS_NAL264, CLS_NAL265, CLS_RAW = 0, 1, 2
FIXED = {("vp8", True): 10, ("vp8", False): 3, ("opus", True): 1, ("opus", False): 1,
         ("vp9", True): 0, ("av1", False): 0}


def fuzz_key(keylen: int) -> bytes:
    """fuzz_common.h's fuzz_key()."""
    return bytes((0x40 + i * 7 + keylen) & 0xFF for i in range(keylen))


KEYSEL = {16: 0, 24: 1, 32: 2}


def sc(four: bool) -> bytes:
    return b"\x00\x00\x00\x01" if four else b"\x00\x00\x01"


def nal(rng: random.Random, header: bytes, size: int, zeros: bool = False) -> bytes:
    """A NAL unit: header bytes then an escaped random payload (what an encoder emits)."""
    if zeros:
        payload = bytes(rng.choice((0, 0, 0, 1, 2, 3, rng.randrange(256))) for _ in range(size))
    else:
        payload = rng.randbytes(size)
    return header + h26x.escape(payload)


def h264_au(
    rng: random.Random, idr: bool, four: bool, slice_size: int, zeros: bool = False
) -> bytes:
    parts = []
    if idr:
        parts += [sc(True) + nal(rng, b"\x67\x42\xc0\x1f", 8),  # SPS
                  sc(four) + nal(rng, b"\x68\xce", 3)]  # PPS
    parts.append(sc(four) + nal(rng, b"\x06\x05", 6))  # SEI
    parts.append(sc(four) + nal(rng, b"\x65\x88" if idr else b"\x41\x9a", slice_size, zeros))
    return b"".join(parts)


def h265_au(rng: random.Random, idr: bool, four: bool, slice_size: int) -> bytes:
    parts = []
    if idr:
        parts += [sc(True) + nal(rng, b"\x40\x01", 10),  # VPS
                  sc(four) + nal(rng, b"\x42\x01", 12),  # SPS
                  sc(four) + nal(rng, b"\x44\x01", 4)]  # PPS
    parts.append(sc(four) + nal(rng, b"\x26\x01" if idr else b"\x02\x01", slice_size))
    return b"".join(parts)


def frames(rng: random.Random) -> dict[str, bytes]:
    """Plaintext frames by name (the same set seeds all three targets)."""
    f: dict[str, bytes] = {}
    f["h264_idr_sc4"] = h264_au(rng, True, True, 120)
    f["h264_idr_sc3"] = h264_au(rng, True, False, 200)
    f["h264_delta_sc3"] = h264_au(rng, False, False, 60)
    f["h264_delta_zeros"] = h264_au(rng, False, True, 90, zeros=True)
    f["h264_big"] = h264_au(rng, True, False, 5000)  # escaped body > fc_lk.c's 4096 scratch
    f["h265_idr"] = h265_au(rng, True, True, 150)
    f["h265_delta_sc3"] = h265_au(rng, False, False, 40)
    f["h265_type0"] = sc(False) + b"\x00\x00" + rng.randbytes(20)  # TRAIL_N header 00 00
    f["many_nals"] = b"".join(sc(k % 2 == 0) + bytes((0x06, k)) for k in range(80)) + \
        sc(False) + b"\x41\x9a" + rng.randbytes(20)  # > 64 NAL units before the slice
    f["no_slice"] = sc(True) + b"\x67\x42\xc0\x1f" + sc(False) + b"\x68\xce\x38\x80"
    f["leading_data"] = b"\x09\x10" + h264_au(rng, False, True, 30)
    f["vp8_key"] = b"\x10\x02\x00\x9d\x01\x2a\x80\x02\xe0\x01" + rng.randbytes(80)
    f["opus"] = b"\xfc" + rng.randbytes(60)
    f["tiny"] = b"\x00\x00\x01\x65"
    f["empty"] = b""
    return f


def codec_of(name: str) -> str:
    for c in ("h264", "h265", "vp8", "opus"):
        if name.startswith(c):
            return c
    return "h264"


def p0(cls: int, key: bool, keylen: int, imb: bool, top: int = 0) -> int:
    return cls | (4 if key else 0) | KEYSEL[keylen] << 3 | (0x20 if imb else 0) | top << 6


def rule_params(codec: str, key: bool) -> tuple[int, int]:
    """(class, p1) of a codec's clear rule."""
    if codec == "h264":
        return CLS_NAL264, 0
    if codec == "h265":
        return CLS_NAL265, 0
    return CLS_RAW, FIXED.get((codec, key), FIXED.get((codec, not key), 0))


def write(dirpath: Path, name: str, data: bytes) -> None:
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / f"{name}-{hashlib.sha1(data).hexdigest()[:8]}").write_bytes(data)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    for t in TARGETS:
        shutil.rmtree(out / t, ignore_errors=True)
    rng = random.Random(20240601)
    fs = frames(rng)

    # fuzz_h26x: the streams, their headers, escaped / unescaped bodies
    for name, data in fs.items():
        write(out / "fuzz_h26x", name, data)
    write(out / "fuzz_h26x", "escaped",
          h26x.escape(b"\x00\x00\x00\x00\x01\x00\x00\x02\x00\x00\x03x"))
    write(out / "fuzz_h26x", "zz3_last", b"\x41\x00\x00\x03")
    write(out / "fuzz_h26x", "zz3_mid", b"\x41\x00\x00\x03\x01\x00\x00\x03\x00")

    # fuzz_lk_seal / fuzz_lk_open: every frame under its codec's rule, key/delta,
    # the three key sizes and both backends
    k = 0
    for name, data in fs.items():
        codec = codec_of(name)
        for key in (True, False):
            keylen = (16, 24, 32)[k % 3]
            imb = k % 2 == 1
            k += 1
            cls, p1 = rule_params(codec, key)
            tr = frame.trailer("livekit", 0x1234_5678 + k, 90000 * k, k, k % 4)
            ssrc_ts_word_kid = tr[:12] + tr[13:]
            write(out / "fuzz_lk_seal", f"{name}-{'key' if key else 'delta'}",
                  bytes((p0(cls, key, keylen, imb), p1, 0)) + ssrc_ts_word_kid + data)
            sealed = seal(codec, key, keylen, data, tr)
            if sealed is None or not sealed:
                continue
            # open with the callers' capacity (p[2] = 0) and the other backend too
            write(out / "fuzz_lk_open", f"{name}-{'key' if key else 'delta'}",
                  bytes((p0(cls, key, keylen, imb), p1, 0, 0)) + sealed)
    # the seal target's capacity modes on one H.264 frame
    for top in (1, 2, 3):
        params = bytes((p0(CLS_NAL264, True, 16, False, top), 0, 0x21)) + bytes(13)
        write(out / "fuzz_lk_seal", f"capmode{top}", params + fs["h264_idr_sc3"])
    sframe_seeds(out / "fuzz_sframe", fs)
    dave_seeds(out / "fuzz_dave", fs)
    for t in TARGETS:
        print(f"{t}: {len(list((out / t).iterdir()))} seeds", file=sys.stderr)


def seal(codec: str, key: bool, keylen: int, data: bytes, tr: bytes) -> bytes | None:
    try:
        return frame.seal_trailer(AESGCM(fuzz_key(keylen)), data, codec, key, tr)
    except Exception:  # MalformedFrame: frame shorter than its clear header
        return None



# ---- fuzz_sframe ----------------------------------------------------------------------


def sf_key(seed: int, nk: int) -> bytes:
    """fuzz_sframe.c's sf_key()."""
    return bytes((seed * 29 + 0x40 + i * 7 + nk) & 0xFF for i in range(nk))


def sf_salt(seed: int) -> bytes:
    """fuzz_sframe.c's sf_salt()."""
    return bytes((seed * 13 + 0xA0 + i * 11) & 0xFF for i in range(12))


def sf_field(v: int) -> bytes:
    """fuzz_sframe.c's field(): 8 value bytes and the form byte that give back v."""
    if v < 8:
        form = next(f for f in range(0, 256, 9) if (f >> 4) & 7 == v)
        return bytes(8) + bytes((form,))
    n = (v.bit_length() + 7) >> 3
    return v.to_bytes(n, "big") + bytes(8 - n) + bytes((n,))


def sframe_seeds(dirpath: Path, fs: dict[str, bytes]) -> None:
    from framecrypt.workers.sframe.aead import make_aead
    from framecrypt.workers.sframe.header import encode_header
    from framecrypt.workers.sframe.suites import get_suite

    rng = random.Random(9605)
    kids = (0, 7, 8, 0x1234, 0xABCDEF, 2**64 - 1)
    ctrs = (0, 5, 8, 300, 2**40 + 3, 2**64 - 1)
    bodies = (b"", b"x", rng.randbytes(33), fs["h264_idr_sc3"][:1500], rng.randbytes(5000))
    k = 0
    for suite in range(1, 9):
        cs = get_suite(suite)
        for j in range(6):
            seed = (suite * 37 + j * 11) & 0xFF
            kid, ctr = kids[(suite + j) % 6], ctrs[(suite * 3 + j) % 6]
            md = (b"", b"meta!", rng.randbytes(300))[(suite + j) % 3]
            pt = bodies[(suite + 2 * j) % 5]
            hdr = encode_header(kid, ctr)
            nonce = (int.from_bytes(sf_salt(seed), "big") ^ ctr).to_bytes(12, "big")
            frm = hdr + make_aead(cs, sf_key(seed, cs.nk)).seal(nonce, hdr + md, pt)
            # p0: suite, backend (IMB on odd seeds), borrowed key on every third, open
            # capacity mode j % 4, overlap checks on every other; seal capacity mode j % 4
            p0 = (suite - 1) | (8 if k % 2 else 0) | (16 if k % 3 == 0 else 0) | \
                ((j % 4) << 5) | (0x80 if j % 2 else 0)
            params = bytes((p0, seed)) + sf_field(kid) + sf_field(ctr) + \
                len(md).to_bytes(2, "big") + bytes((j * 5, j % 4 | (j << 2)))
            assert len(params) == 24
            write(dirpath, f"suite{suite}-{j}", params + md + frm)
            k += 1
    # headers alone: every config byte's layout, non-minimal and truncated ones
    for cfg in (0x00, 0x77, 0x80, 0x88, 0xF8, 0x8F, 0xFF):
        write(dirpath, f"hdr{cfg:02x}", bytes((cfg,)) + bytes(range(1, 17)))
    write(dirpath, "hdr_nonmin_kid", b"\x90\x00\x01")
    write(dirpath, "hdr_nonmin_ctr", b"\x09\x00\x01")


# ---- fuzz_dave ------------------------------------------------------------------------

# fuzz_dave.c's P[0]: mode (bits 0-1), primary backend ipsec-mb (bit 2), H.265 / in place
# (bit 3), capacity mode (bits 4-5), bits 6-7 per mode
DAVE_OPEN, DAVE_SEAL, DAVE_H26X, DAVE_RANGES = 0, 1, 2, 3


def dave_params(mode: int, imb: bool = False, bit3: bool = False, capmode: int = 0,
                top: int = 0, p1: int = 0, nonce: int = 0, w6: int = 0, w8: int = 0) -> bytes:
    """fuzz_dave.c's 10 parameter bytes."""
    p0 = mode | (4 if imb else 0) | (8 if bit3 else 0) | capmode << 4 | top << 6
    return bytes((p0, p1)) + nonce.to_bytes(4, "little") + w6.to_bytes(2, "little") + \
        w8.to_bytes(2, "little")


def dave_seeds(dirpath: Path, fs: dict[str, bytes]) -> None:
    from framecrypt import samples
    from framecrypt.workers.dave import frame as dave

    key = AESGCM(fuzz_key(16))  # not the extension's AesGcm: the pure-Python path seals
    rng = random.Random(0xDA7E)
    video = {c: samples.video(c, count=3, width=96, height=64) for c in ("h264", "h265", "vp8")}
    opus = [f.data for f in samples.audio(count=2)] + [dave.OPUS_SILENCE]
    # nonces of 1..5 ULEB128 bytes, generations 0, 1, 0xFF
    nonces = (5, 0x7F, 0x80, 0x3FFF, 0x012345, 0x01FFFFF0, 0x0FFFFFFF, 0xFFFFFFF0)
    k = 0

    def nxt() -> int:
        nonlocal k
        k += 1
        return nonces[k % len(nonces)]

    # mode 0: sealed frames, opened with the callers' capacity (both backends either way)
    for codec in ("h264", "h265"):
        for i, f in enumerate(video[codec][:2]):
            sealed, _ = dave.seal_h26x(key, nxt(), codec, f.data)
            write(dirpath, f"open-{codec}-{'key' if f.keyframe else 'delta'}{i}",
                  dave_params(DAVE_OPEN, imb=k % 2 == 1) + sealed)
    for name in ("h264_idr_sc3", "many_nals", "h265_delta_sc3", "leading_data"):
        codec = "h265" if name.startswith("h265") else "h264"
        sealed, _ = dave.seal_h26x(key, nxt(), codec, fs[name])
        write(dirpath, f"open-{name}", dave_params(DAVE_OPEN, imb=k % 2 == 1) + sealed)
    for i, f in enumerate(video["vp8"][:2]):
        sealed = dave.seal(key, nxt(), f.data, dave.unencrypted_ranges("vp8", f.data))
        write(dirpath, f"open-vp8-{i}", dave_params(DAVE_OPEN, imb=i == 1) + sealed)
    for i, data in enumerate(opus):
        sealed = dave.seal(key, nxt(), data)
        write(dirpath, f"open-opus-{i}", dave_params(DAVE_OPEN, imb=i == 1, capmode=i % 4) +
              sealed)
    write(dirpath, "open-empty", dave_params(DAVE_OPEN) + dave.seal(key, 0xFFFFFFFF, b""))
    # many ranges (a footer of 136 bytes), offsets of 2 ULEB128 bytes
    body = rng.randbytes(3000)
    ranges, pos = [], 0
    for _ in range(60):
        pos += rng.randrange(1, 40)
        size = rng.randrange(0, 8)
        ranges.append((pos, size))
        pos += size
    write(dirpath, "open-60-ranges", dave_params(DAVE_OPEN, capmode=1) +
          dave.seal(key, 0x1234, body, ranges))

    # mode 1: plaintext frames with their codec's clear prefix
    for i, f in enumerate(video["vp8"][:2]):
        clear = dave.unencrypted_ranges("vp8", f.data)
        write(dirpath, f"seal-vp8-{i}",
              dave_params(DAVE_SEAL, imb=i == 1, p1=0x80, nonce=nxt(),
                          w6=clear[0][1] if clear else 0, w8=rng.randrange(65536)) + f.data)
    for i, data in enumerate(opus):
        write(dirpath, f"seal-opus-{i}", dave_params(DAVE_SEAL, imb=i == 0, p1=1 << i,
                                                     nonce=nxt(), w8=len(data) + 3) + data)

    # mode 2: H.264 / H.265 frames (one first nonce at the generation's last allowed
    # value, one past it)
    for codec in ("h264", "h265"):
        for i, f in enumerate(video[codec]):
            first = (0x00FFFFF6, 0x02FFFFF7, nxt())[i]
            write(dirpath, f"h26x-{codec}-{i}",
                  dave_params(DAVE_H26X, imb=i == 1, bit3=codec == "h265", nonce=first) + f.data)
    for name, data in fs.items():
        if name.startswith(("h264", "h265", "many", "no_slice", "leading", "tiny")) and \
                name != "h264_big":
            write(dirpath, f"h26x-{name}",
                  dave_params(DAVE_H26X, bit3=name.startswith("h265"), capmode=k % 4,
                              p1=rng.randrange(256), nonce=nxt()) + data)

    # mode 3: (gap, size) ranges in front of a frame
    for i, (data, nr) in enumerate(((video["vp8"][0].data, 3), (opus[0], 1), (body[:500], 40))):
        rs = bytes(rng.randrange(1, 12) for _ in range(2 * nr))
        write(dirpath, f"ranges-{i}", dave_params(DAVE_RANGES, bit3=i == 1, imb=i == 2,
                                                  nonce=nxt(), w6=nr) + rs + data)


if __name__ == "__main__":
    main()

"""Checks the fuzz targets' C port of the reference (fuzz_common.h) against the Python
reference itself (framecrypt.workers.livekit.h26x) on random Annex-B-like inputs.

    .venv/bin/python tests/fuzz/ref_port_check.py LIBREF_PORT.so [N]

.ci/fuzz builds the library (ref_port.c) and runs this before fuzzing. Exit 1 on the
first disagreement (printed with its input).
"""

from __future__ import annotations

import ctypes
import random
import sys

from framecrypt.workers.livekit import h26x

ATOMS = [b"\x00", b"\x00\x00", b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x00\x00\x03",
         b"\x01", b"\x02", b"\x03", b"\x65", b"\x41", b"\x26\x01", b"\x02\x01", b"\x00\x01",
         b"\x40\x01", b"\x67", b"\x0c"]


def sample(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randrange(0, 40)):
        if rng.random() < 0.75:
            parts.append(rng.choice(ATOMS))
        else:
            parts.append(rng.randbytes(rng.randrange(1, 6)))
    b = b"".join(parts)
    if rng.random() < 0.02:  # many NAL units
        starts = (b"\x00\x00\x01", b"\x00\x00\x00\x01")
        types = (6, 9, 0x65, 0x41, 2, 0x26)
        b = b"".join(rng.choice(starts) + bytes((rng.choice(types), 1))
                     for _ in range(rng.randrange(60, 90)))
    return b


def main() -> None:
    lib = ctypes.CDLL(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    for f in ("rp_normalize", "rp_escape", "rp_unescape"):
        getattr(lib, f).restype = ctypes.c_size_t
        getattr(lib, f).argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]
    lib.rp_clear_bytes.restype = ctypes.c_long
    lib.rp_clear_bytes.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    lib.rp_needs_unescape.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    rng = random.Random(12345)
    codecs = {0: None, 1: "h264", 2: "h265"}
    for _ in range(n):
        x = sample(rng)
        out = ctypes.create_string_buffer(2 * len(x) + 2)

        def xf(name: str, x: bytes = x, out: ctypes.Array[ctypes.c_char] = out) -> bytes:
            k = getattr(lib, name)(x, len(x), out)
            return bytes(out.raw[:k])

        checks = [(f"clear_bytes({known})", lib.rp_clear_bytes(x, len(x), known),
                   -1 if (r := h26x.clear_bytes(x, codecs[known])) is None else r)
                  for known in (0, 1, 2)]
        checks += [("normalize", xf("rp_normalize"), h26x.normalize_start_codes(x)),
                   ("escape", xf("rp_escape"), h26x.escape(x)),
                   ("unescape", xf("rp_unescape"), h26x.unescape(x)),
                   ("needs_unescape", bool(lib.rp_needs_unescape(x, len(x))),
                    h26x.needs_unescape(x))]
        for name, port, ref in checks:
            if port != ref:
                print(f"ref_port_check: {name} differs on {x.hex()}: port {port!r}, Python {ref!r}",
                      file=sys.stderr)
                sys.exit(1)
    print(f"ref_port_check: the C port agrees with h26x.py on {n} inputs")


if __name__ == "__main__":
    main()

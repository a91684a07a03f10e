"""H.264 / H.265 frames as a DAVE sender seals them (libdave's NAL-aware rules).

The frame is rebuilt NAL unit by NAL unit, each behind a 4-byte start code (what WebRTC's
depacketizer hands the receiver); bytes before the first start code are dropped. Clear:
the start codes, every non-VCL NAL unit, and of a VCL unit its header (H.265: 2 bytes;
H.264 slices and IDRs: the header and the bytes covering the slice header's first three
exp-Golomb values, up to the PPS id). Encrypted: the rest of each VCL unit.

After sealing, no encrypted section (nor the footer) may contain a start code, or the
packetizer would split the frame: the sender retries with the next nonce, at most
:data:`MAX_ATTEMPTS` times (:func:`has_start_code_leak`).
"""

from __future__ import annotations

from framecrypt.errors import MalformedFrame

LONG_START_CODE = b"\x00\x00\x00\x01"
MAX_ATTEMPTS = 10


def next_nalu(buf: bytes, start: int = 0) -> tuple[int, int] | None:
    """(index of the NAL unit after the next start code at or after ``start``, start code
    length 3 or 4), as libdave's scan finds it: the first ``00 00 01`` that starts before
    the last 3 bytes (libdave's skipping loop finds exactly the first one)."""
    i = buf.find(b"\x00\x00\x01", start, len(buf) - 1)
    if i < 0:
        return None
    return i + 3, 4 if i >= 1 and buf[i - 1] == 0 else 3


def bytes_covering_h264_pps(payload: bytes) -> int:
    """How many bytes of a slice payload cover its first three exp-Golomb values
    (first_mb_in_slice, slice_type, pic_parameter_set_id), emulation prevention included."""
    bit = zeros = parsed = 0
    total_bits = len(payload) * 8
    while bit < total_bits and parsed < 3:
        byte_at, in_byte = divmod(bit, 8)
        byte = payload[byte_at]
        if in_byte == 0 and byte_at >= 2 and byte == 3 and payload[byte_at - 1] == 0 \
                and payload[byte_at - 2] == 0:
            bit += 8
            continue
        if not byte & (0x80 >> in_byte):
            zeros += 1
            bit += 1
            if zeros >= 32:
                raise MalformedFrame("H.264 exp-Golomb value too large")
        else:
            parsed += 1
            bit += 1 + zeros
            zeros = 0
    return bit // 8 + 1


def h26x_frame(codec: str, frame: bytes | bytearray | memoryview
               ) -> tuple[bytes, list[tuple[int, int]]]:
    """The frame a sender seals and its clear ranges; a frame too short for one NAL unit
    is sealed as it is, encrypted whole. :class:`MalformedFrame` for a slice header that
    runs past its NAL unit (libdave reads beyond it)."""
    data = bytes(frame)
    n = len(data)
    header = 1 if codec == "h264" else 2
    if n < 3 + header:
        return data, []
    out = bytearray()
    ranges: list[tuple[int, int]] = []

    def clear(chunk: bytes) -> None:
        if ranges and ranges[-1][0] + ranges[-1][1] == len(out):
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + len(chunk))
        else:
            ranges.append((len(out), len(chunk)))
        out.extend(chunk)

    found = next_nalu(data)
    while found is not None and found[0] < n - 1:
        start = found[0]
        clear(LONG_START_CODE)
        found = next_nalu(data, start)
        end = found[0] - found[1] if found is not None else n
        if codec == "h264":
            vcl = data[start] & 0x1F in (1, 5)
            keep = header + bytes_covering_h264_pps(data[start + header :]) if vcl else 0
        else:
            vcl = (data[start] & 0x7E) >> 1 < 32
            keep = header
        if not vcl:
            clear(data[start:end])
            continue
        if start + keep > end:
            raise MalformedFrame("H.264 slice header runs past its NAL unit")
        clear(data[start : start + keep])
        out.extend(data[start + keep : end])
    return bytes(out), ranges


def has_start_code_leak(sealed: bytes, ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]
                        ) -> bool:
    """Whether an encrypted section of ``sealed`` (with 2 bytes either side), or the part
    from the last clear range to the end (the footer included), holds a start code."""
    pad = 2
    section = 0
    n = len(sealed)
    for offset, size in ranges:
        if section == offset:
            section += size
            continue
        lo = section - min(section, pad)
        if sealed.find(b"\x00\x00\x01", lo, min(offset + pad, n) - 1) >= 0:
            return True
        section = offset + size
    if section == n:
        return False
    lo = section - min(section, pad)
    return sealed.find(b"\x00\x00\x01", lo, n - 1) >= 0

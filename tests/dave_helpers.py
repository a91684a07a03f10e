"""A two-member DAVE group for the media-layer tests (framecrypt.keys.dave_external is
the external sender).

It forms a two-member group: a davey member commits the Add of a dave-py member, which
joins from the Welcome. Wire formats: ../shared/reference/dave.md ("Forming a test group").
Neither library lets a caller choose a sender key (dave-py's key ratchet is an opaque
``IKeyRatchet`` from ``Session.get_key_ratchet``; davey keys itself from its MLS group), so
:func:`find_base_secret` recovers a sender's base secret from the memory of this process,
where a fresh libdave ``MlsKeyRatchet`` holds it, by trying every aligned 16-byte window
against a frame that sender sealed. Linux only (/proc/self/mem).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from framecrypt.keys.dave_external import ExternalSender, proposals_payload


@dataclass
class Group:
    davey_member: Any  # davey.DaveSession, the committer
    davey_id: int
    dave_member: Any  # dave.Session, joined from the Welcome
    dave_id: int


def form_group(davey_id: int = 1111, dave_id: int = 2222, channel: int = 77) -> Group:
    import dave
    import davey

    gw = ExternalSender(channel)
    a = davey.DaveSession(1, davey_id, channel)
    a.set_external_sender(gw.package())
    a.get_serialized_key_package()
    b = dave.Session()
    b.init(1, channel, str(dave_id))
    b.set_external_sender(gw.package())
    kp = b.get_marshalled_key_package()
    assert kp is not None
    proposal = gw.add(0, bytes(kp))
    cw = a.process_proposals(davey.ProposalsOperationType.append,
                             proposals_payload(proposal)[1:], [dave_id])
    assert cw is not None and cw.welcome is not None
    a.process_commit(cw.commit)
    roster = b.process_welcome(cw.welcome, {str(davey_id), str(dave_id)})
    assert roster is not None, "dave-py rejected davey's Welcome"
    assert a.ready and b.has_established_group()
    return Group(a, davey_id, b, dave_id)


def _rw_anonymous_regions() -> list[tuple[int, int]]:
    regions = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) rw-p \S+ \S+ (\d+)\s*(\S*)", line)
            if m and m.group(3) == "0" and m.group(4) in ("", "[heap]"):
                regions.append((int(m.group(1), 16), int(m.group(2), 16)))
    return regions


def find_base_secret(opens: Any, size: int = 16) -> bytes | None:
    """The first ``size``-byte window (16-byte aligned) of this process's anonymous memory
    for which ``opens(candidate)`` is true."""
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        for start, end in _rw_anonymous_regions():
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            for off in range(0, len(data) - size + 1, 16):
                cand = data[off : off + size]
                if cand.count(0) > 3:
                    continue
                if opens(cand):
                    return bytes(cand)
    return None

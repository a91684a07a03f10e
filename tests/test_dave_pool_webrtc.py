"""A DAVE call through framecrypt.webrtc: two real aiortc peers on loopback, a DAVE pool
with worker processes (each sender keyed by its base secret in an MLS epoch), VP8 or
H.264 video and Opus audio. What the sender seals is a DAVE frame framecrypt's pure core
opens, with one nonce sequence for the sender's audio and video; the receiver decodes
the picture; a receiver with another sender's secret decodes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pool_helpers import run
from test_webrtc import Call, RecordingSender, pattern_and_tone_decode, wait_until

from framecrypt import Pool, dave
from framecrypt.demo import media
from framecrypt.webrtc import prefer_codecs

pytestmark = pytest.mark.timeout(60)

SECRET = bytes(range(16))
OTHER = bytes(range(1, 17))


async def dave_pool(receiver_secret: bytes = SECRET) -> Pool:
    pool = Pool(workers=2, format="dave")
    await pool.start()
    await pool.set_dave_key("alice", 3, SECRET)  # alice seals as herself
    await pool.set_dave_key("bob<-alice", 3, receiver_secret)  # bob opens alice's frames
    return pool


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_dave_call_round_trip(codec: str) -> None:
    async def main() -> None:
        pool = await dave_pool()
        call = Call()
        try:
            sv, sa = await pattern_and_tone_decode(pool, call, codec)
            nonces: list[int] = []
            for rec in (sv, sa):
                for plain, sealed, _kf in rec.sealed:
                    assert dave.is_dave_frame(sealed)
                    assert dave.open(sealed, base_secret=SECRET) == \
                        dave.as_received(plain, rec.codec or "")
                    nonces.append(dave.nonce_of(sealed))
            # one sequence for alice's audio and video, never repeated (H.264 frames may
            # skip a nonce: a start-code retry)
            assert len(set(nonces)) == len(nonces) and min(nonces) == 1
        finally:
            await call.close()
            await pool.close()

    run(main, timeout=55)


def test_dave_wrong_secret_decodes_nothing() -> None:
    async def main() -> None:
        pool = await dave_pool(receiver_secret=OTHER)
        call = Call()
        try:
            tv = call.a.addTransceiver(media.PatternTrack(), "sendonly")
            prefer_codecs(tv, "vp8")
            sv = RecordingSender(pool, "alice").attach(tv.sender)
            await call.connect(pool)
            await wait_until(lambda: len(sv.sealed) >= 30
                             and call.receivers["video"].stats.frames_failed >= 10, 30,
                             "frames refused")
            assert call.receivers["video"].stats.frames_opened == 0
            assert len(call.sinks["video"].frames) == 0
        finally:
            await call.close()
            await pool.close()

    run(main, timeout=55)


def test_framecrypt_demo_format_dave(tmp_path: Path) -> None:
    """``framecrypt demo --format dave``: a DAVE call through the untrusted relay, keyed
    from one MLS group; mallory (a base secret of her own) decodes nothing."""
    out = tmp_path / "s.json"
    proc = subprocess.run([sys.executable, "-m", "framecrypt", "demo", "--format", "dave",
                           "--participants", "2", "--wrong-key", "--duration", "3",
                           "--json", str(out), "--report", "rep"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=50, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DAVE frames keyed from one MLS group" in proc.stdout
    s = json.loads(out.read_text())
    assert s["ok"] is True and s["pool"]["frames_failed"] > 0  # mallory's refusals only
    people = {p["name"]: p for p in s["participants"]}
    for name in ("alice", "bob"):
        assert people[name]["psnr_db"] > 30 and people[name]["frames_decoded"] > 30
    assert people["mallory"]["frames_decoded"] == 0
    assert s["relay"]["frames_decodable"] == 0

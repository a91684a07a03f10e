"""E2EE data messages: the LiveKit data-packet layout (checked byte by byte against the
documented layout of livekit-client 2.23.0's DataCryptor, computed here with bare
primitives), the SFrame variant, replay protection, ratchet-on-failure, and chat between
participants of a room."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from keys_helpers import room, run

from framecrypt import jitsi, livekit, sframe
from framecrypt.errors import AuthenticationFailed, MalformedFrame, ReplayedFrame, UnknownKey
from framecrypt.keys.datamsg import (
    DataReceiver,
    DataSender,
    EncryptedPacket,
    IvReplayGuard,
    SFrameDataReceiver,
    SFrameDataSender,
    chat_payload,
    data_iv,
    decrypt_data,
    encrypt_data,
    kdf_for,
    parse_payload,
    sframe_open_data,
    sframe_seal_data,
    user_payload,
)
from framecrypt.keys.olm import MediaKey
from framecrypt.keys.policy import KeySwitched

MAT = bytes(range(32))


def hkdf(m: bytes, salt: bytes, info: bytes, n: int = 16) -> bytes:
    return HKDF(SHA256(), n, salt, info).derive(m)


# --- the layout ----------------------------------------------------------------------


def test_iv_is_random_time_and_time_minus_count() -> None:
    assert data_iv(0xDEADBEEF, 1000, 5) == struct.pack(">III", 0xDEADBEEF, 1000, 995)
    # DataView.setUint32 semantics: mod 2**32, and the subtraction wraps
    assert data_iv(1, 2**32 + 7, 0) == struct.pack(">III", 1, 7, 7)
    assert data_iv(1, 3, 10) == struct.pack(">III", 1, 3, (3 - 10) & 0xFFFFFFFF)
    assert data_iv(1, 10, 0xFFFF + 2) == struct.pack(">III", 1, 10, 8)   # count mod 0xFFFF


@pytest.mark.parametrize("fmt", ["jitsi", "livekit"])
def test_known_answer_from_bare_primitives(fmt: str) -> None:
    """The frame AES key of the sender's material, IV as above, AES-GCM, no AAD."""
    if fmt == "jitsi":
        aes = hkdf(MAT, b"JFrameEncryptionKey", b"")
        assert aes == jitsi.derive_key(MAT)
    else:
        aes = hkdf(MAT, b"LKFrameEncryptionKey", bytes(128))
        assert aes == livekit.derive_key(MAT)            # the key livekit frames use
    plaintext = chat_payload("hello", id="m-1", timestamp_ms=1_700_000_000_000)
    iv = struct.pack(">III", 0x01020304, 123_456, 123_456 - 41)
    expected = AESGCM(aes).encrypt(iv, plaintext, None)
    sender = DataSender(kdf_for(fmt))  # type: ignore[arg-type]
    sender.send_count = 41
    pkt = sender.seal(plaintext, MediaKey(MAT, 17), now_ms=123_456, random32=0x01020304)
    assert pkt.iv == iv and pkt.payload == expected and pkt.key_index == 17 % 16
    assert len(pkt.payload) == len(plaintext) + 16
    assert sender.send_count == 42
    assert decrypt_data(pkt, key=aes) == plaintext
    # no AAD: with any AAD it does not open
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        AESGCM(aes).decrypt(iv, pkt.payload, b"x")


def test_encrypted_packet_protobuf() -> None:
    iv = bytes(range(12))
    pkt = EncryptedPacket(iv, 3, b"\xAA" * 200)
    raw = pkt.to_bytes()
    # livekit.EncryptedPacket: encryption_type #1 left unset (as livekit-client sends it),
    # iv #2, key_index #3, encrypted_value #4 (length 200 = varint c8 01)
    assert raw == b"\x12\x0c" + iv + b"\x18\x03" + b"\x22\xc8\x01" + b"\xAA" * 200
    assert EncryptedPacket.from_bytes(raw) == pkt
    gcm = EncryptedPacket(iv, 0, b"x" * 17, encryption_type=1)
    assert gcm.to_bytes().startswith(b"\x08\x01") and EncryptedPacket.from_bytes(
        gcm.to_bytes()) == gcm
    for bad in (b"\x08\x02" + raw, b"\x12\x02ab", raw[:-5], b"\x0f"):
        with pytest.raises(MalformedFrame):
            EncryptedPacket.from_bytes(bad)
    assert "AA" not in repr(pkt) and "200 B" in repr(pkt)


def test_encrypted_packet_payloads() -> None:
    u = user_payload(b"hi", "t")
    assert u == b"\x0a\x07" + b"\x12\x02hi" + b"\x22\x01t"
    c = chat_payload("yo", id="m1", timestamp_ms=5)
    assert c == b"\x1a\x0a" + b"\x0a\x02m1" + b"\x10\x05" + b"\x22\x02yo"
    pu, pc = parse_payload(u), parse_payload(c)
    assert (pu.kind, pu.data, pu.topic) == ("user", b"hi", "t")
    assert (pc.kind, pc.text, pc.id, pc.timestamp_ms) == ("chat", "yo", "m1", 5)
    assert parse_payload(b"").kind == "other"
    big = chat_payload("x" * 300, id="i", timestamp_ms=2**41)
    assert parse_payload(big).text == "x" * 300 and parse_payload(big).timestamp_ms == 2**41


def test_pure_functions_check_their_inputs() -> None:
    aes = jitsi.derive_key(MAT)
    pkt = encrypt_data(b"p", key=aes, key_index=0, random32=1, now_ms=1, send_count=0)
    bad = EncryptedPacket(pkt.iv, 0, pkt.payload[:-1] + bytes([pkt.payload[-1] ^ 1]))
    with pytest.raises(AuthenticationFailed):
        decrypt_data(bad, key=aes)
    with pytest.raises(MalformedFrame):
        decrypt_data(EncryptedPacket(pkt.iv, 0, b"short"), key=aes)
    from framecrypt.errors import InvalidKeyMaterial

    with pytest.raises(InvalidKeyMaterial):
        encrypt_data(b"p", key=b"short", key_index=0, random32=1, now_ms=1, send_count=0)


# --- receiver: replay, ratchet, keys -------------------------------------------------


def sender_receiver() -> tuple[DataSender, DataReceiver]:
    s, r = DataSender(), DataReceiver(replay_window_ms=1000)
    r.set_key("alice", MediaKey(MAT, 0))
    return s, r


def test_replayed_and_old_packets_are_refused() -> None:
    s, r = sender_receiver()
    key = MediaKey(MAT, 0)
    p1 = s.seal(b"one", key, now_ms=10_000, random32=1)
    p2 = s.seal(b"two", key, now_ms=10_500, random32=2)
    assert r.open("alice", p2.to_bytes()) == b"two"
    assert r.open("alice", p1) == b"one"                    # reordered within the window
    with pytest.raises(ReplayedFrame):
        r.open("alice", p1)                                  # replayed
    with pytest.raises(ReplayedFrame):
        r.open("alice", p2.to_bytes())
    p3 = s.seal(b"three", key, now_ms=12_000, random32=3)
    assert r.open("alice", p3) == b"three"
    late = s.seal(b"late", key, now_ms=10_900, random32=4)   # 1.1 s behind the newest
    with pytest.raises(ReplayedFrame):
        r.open("alice", late)
    # a forged packet is refused and does not poison the guard
    p4 = s.seal(b"four", key, now_ms=12_100, random32=5)
    forged = EncryptedPacket(p4.iv, 0, bytes(len(p4.payload)))
    with pytest.raises(AuthenticationFailed):
        r.open("alice", forged)
    assert r.open("alice", p4) == b"four"


def test_time_field_wraps() -> None:
    g = IvReplayGuard(window_ms=100)
    near_end = data_iv(1, 2**32 - 10, 0)
    after_wrap = data_iv(2, 5, 0)
    g.accept(0, near_end)
    g.inspect(0, after_wrap)
    g.accept(0, after_wrap)
    g.inspect(0, data_iv(3, 2**32 - 50, 0))                 # 55 ms behind: inside
    with pytest.raises(ReplayedFrame):
        g.inspect(0, data_iv(4, 2**32 - 200, 0))            # 205 ms behind: too old
    with pytest.raises(ReplayedFrame):
        g.inspect(0, near_end)


def test_ratchet_on_failure_and_unknown_keys() -> None:
    s, r = sender_receiver()
    ratcheted = MediaKey(jitsi.ratchet(jitsi.ratchet(MAT)), 0)  # alice ratcheted twice
    pkt = s.seal(b"after join", ratcheted, now_ms=1, random32=9)
    assert r.open("alice", pkt) == b"after join"
    assert r._keys._rings["alice"][0] == ratcheted.material   # committed
    far = MediaKey(MAT, 0)
    for _ in range(12):
        far = MediaKey(jitsi.ratchet(far.material or b""), 0)
    with pytest.raises(AuthenticationFailed):
        r.open("alice", s.seal(b"x", far, now_ms=2, random32=1))
    with pytest.raises(UnknownKey):
        r.open("alice", s.seal(b"x", MediaKey(MAT, 5), now_ms=3, random32=1))
    with pytest.raises(UnknownKey):
        r.open("bob", pkt)
    r.remove("alice")
    with pytest.raises(UnknownKey):
        r.open("alice", s.seal(b"x", ratcheted, now_ms=4, random32=1))


# --- the SFrame variant --------------------------------------------------------------


def test_sframe_variant() -> None:
    s = SFrameDataSender()
    r = SFrameDataReceiver()
    key = MediaKey(MAT, 3)
    r.set_key("alice", key)
    m1 = s.seal(b"hello", key, aad=b"chat")
    m2 = s.seal(b"world", key, aad=b"chat")
    kid, ctr, _ = sframe.decode_header(m2)
    assert (kid, ctr) == (3, 1)
    assert sframe.unprotect(0x0004, MAT, m1, b"chat") == (3, 0, b"hello")   # plain RFC 9605
    assert sframe_open_data(m1, material=MAT, aad=b"chat") == (3, 0, b"hello")
    assert r.open("alice", m2, aad=b"chat") == b"world"
    assert r.open("alice", m1, aad=b"chat") == b"hello"
    with pytest.raises(ReplayedFrame):
        r.open("alice", m1, aad=b"chat")
    with pytest.raises(AuthenticationFailed):
        r.open("alice", s.seal(b"x", key, aad=b"chat"), aad=b"other")
    later = MediaKey(jitsi.ratchet(MAT), 3)
    assert r.open("alice", s.seal(b"ratcheted", later)) == b"ratcheted"
    with pytest.raises(UnknownKey):
        r.open("alice", sframe_seal_data(b"x", material=MAT, kid=4, ctr=0))


# --- chat between participants of a room ---------------------------------------------


def test_chat_is_end_to_end_encrypted_in_a_room() -> None:
    async def main() -> None:
        async with room() as r:
            for p in ("alice", "bob", "carol"):
                await r.enter(p)
            a = r.drivers["alice"]
            pkt = a.encrypt_data(chat_payload("hi all", id="1", timestamp_ms=1), now_ms=1000)
            for p in ("bob", "carol"):
                assert parse_payload(r.drivers[p].decrypt_data("alice", pkt)).text == "hi all"
            with pytest.raises(ReplayedFrame):
                r.drivers["bob"].decrypt_data("alice", pkt)
            # dave joins: alice ratchets; bob follows by ratchet-on-failure
            await r.enter("dave")
            pkt = a.encrypt_data(user_payload(b"\x01\x02", "t"), now_ms=2000)
            assert parse_payload(r.drivers["bob"].decrypt_data("alice", pkt)).data == b"\x01\x02"
            assert parse_payload(r.drivers["dave"].decrypt_data("alice", pkt)).topic == "t"
            # carol leaves: after the switch she opens no chat
            await r.leave("carol")
            assert any(isinstance(e, KeySwitched) and e.cause == "leave" for e in a.events)
            pkt = a.encrypt_data(chat_payload("secret", id="2", timestamp_ms=3), now_ms=3000)
            assert parse_payload(r.drivers["bob"].decrypt_data("alice", pkt)).text == "secret"
            with pytest.raises((UnknownKey, AuthenticationFailed)):
                r.drivers["carol"].decrypt_data("alice", pkt)

    run(main)

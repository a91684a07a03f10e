"""Peer JSON is parsed with bounded size and nesting (framecrypt.keys.jsonlimits):
deeply nested envelopes and Olm plaintexts are refused as MalformedMessage instead of
raising RecursionError, nesting inside strings is data, unpaired surrogates and NaN are
refused, and no input makes the envelope parser raise anything untyped."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framecrypt.keys import envelope, jsonlimits
from framecrypt.keys.envelope import Ciphertext, ErrorMessage, KeyInfo, SessionAck
from framecrypt.keys.errors import MalformedMessage
from framecrypt.keys.olm import MediaKey, OlmChannel, OlmIdentity

KEY_A = MediaKey(bytes(range(32)), 0)
KEY_B = MediaKey(bytes(range(100, 132)), 3)
DEEP_ARRAYS = "[" * 30000 + "]" * 30000          # 60 KB, under the 64 KiB envelope cap


def _key_info(ciphertext: str) -> str:
    return ('{"type":"olm","olm":{"type":"key-info","data":{"ciphertext":' + ciphertext
            + ',"uuid":"u"}}}')


def _error(value: str) -> str:
    return '{"type":"olm","olm":{"type":"error","data":{"error":' + value + "}}}"


def _pair() -> tuple[OlmChannel, OlmChannel]:
    a = OlmChannel(OlmIdentity(), "a", "b")
    b = OlmChannel(OlmIdentity(), "b", "a")
    a.complete(b.accept(a.initiate(), KEY_B))
    return a, b


def _raw_message(sender: OlmChannel, plaintext: bytes) -> tuple[int, str]:
    """A genuine Olm message from ``sender``'s session whose plaintext is ``plaintext``."""
    assert sender._session is not None
    t, body = sender._session.encrypt(plaintext).to_parts()
    return t, base64.b64encode(body).decode().rstrip("=")


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


# --- nesting ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    DEEP_ARRAYS,
    DEEP_ARRAYS.encode(),
    '{"a":' * 10000 + "1" + "}" * 10000,
    _key_info(DEEP_ARRAYS),                                 # nested inside a valid field
    _error("[" * 40000),                                    # unbalanced, never closed
    _key_info("[" * 30 + "]" * 30),                         # 3 objects + 30 = 33 levels
])
def test_deeply_nested_envelope_is_malformed(text: str | bytes) -> None:
    assert len(text) <= envelope.MAX_ENVELOPE_CHARS
    with pytest.raises(MalformedMessage) as e:
        envelope.from_json(text)
    assert "nested too deeply" in e.value.reason


def test_nesting_up_to_the_limit_is_parsed() -> None:
    deep = "[" * jsonlimits.MAX_DEPTH + "]" * jsonlimits.MAX_DEPTH
    assert _depth(jsonlimits.loads(deep)) == jsonlimits.MAX_DEPTH
    with pytest.raises(MalformedMessage):
        jsonlimits.loads("[" + deep + "]")
    # every real envelope is far below it (depth 4: olm.data.ciphertext / olm.data.mac)
    msg = envelope.SasMac("t", "k", (("ed25519:a", "m"),))
    assert _depth(json.loads(envelope.to_json(msg))) == 4


def test_deeply_nested_olm_plaintext_is_malformed_and_channel_survives() -> None:
    a, b = _pair()
    deep = (b'{"key":false,"keyIndex":0,"type":"key-info","seq":2,"x":'
            + b"[" * 30000 + b"]" * 30000 + b"}")
    t, body = _raw_message(b, deep)
    with pytest.raises(MalformedMessage) as e:
        a.open(KeyInfo(Ciphertext(t, body), "u-deep"))
    assert "nested too deeply" in e.value.reason
    # no poisoned state: the next genuine messages open, in both directions
    assert a.open(b.seal("key-info", "u1", key=KEY_A)).key == KEY_A
    assert b.open(a.seal("key-info", "u2", key=KEY_B)).key == KEY_B


def test_deeply_nested_session_ack_plaintext_is_malformed() -> None:
    a = OlmChannel(OlmIdentity(), "a", "b")
    b = OlmChannel(OlmIdentity(), "b", "a")
    init = a.initiate()
    b.accept(init, None)
    t, body = _raw_message(b, b"[" * 30000 + b"]" * 30000)
    assert t == 0                                      # a pre-key message, as session-ack
    with pytest.raises(MalformedMessage):
        a.complete(SessionAck(Ciphertext(t, body), init.uuid))


# --- strings are data -----------------------------------------------------------------


def test_brackets_inside_strings_are_not_nesting() -> None:
    big = "[" * 100_000
    assert jsonlimits.loads(json.dumps({"s": big}), max_chars=200_000) == {"s": big}
    tricky = ['"\\"[[["', '"\\\\"', '"{\\\\\\"[["', '"]]]"', '"\\u005b[["',
              json.dumps('"' + "[" * 40), json.dumps("\\" + '"' + "{" * 40)]
    value = json.loads("[" + ",".join(tricky) + "]")
    assert jsonlimits.loads("[" + ",".join(tricky) + "]") == value
    # through the envelope parser: a 60 KB "[[[…" error string is an error message
    msg = envelope.from_json(_error(json.dumps("[" * 60000)))
    assert msg == ErrorMessage("[" * 200)
    assert envelope.from_json(_error(json.dumps("{" * 60000))) == ErrorMessage("{" * 200)


# --- other malformed JSON that used to get through --------------------------------------


@pytest.mark.parametrize("text", [
    _key_info('{"type":1,"body":"\\ud800"}'),              # unpaired surrogate, escaped
    _key_info('{"type":1,"body":"\\udc00AAAA"}'),
    _key_info('{"type":1,"body":"\ud800"}'),               # a raw one in a str
    _key_info('{"type":1,"body":"A\ud800"}').encode("utf-8", "surrogatepass"),  # bytes
    _error("NaN"),
    _error("-Infinity"),
])
def test_surrogates_and_non_json_constants_are_malformed(text: str | bytes) -> None:
    with pytest.raises(MalformedMessage):
        envelope.from_json(text)


def test_paired_surrogates_are_fine() -> None:
    msg = envelope.from_json(_error('"\\ud83d\\ude00"'))
    assert msg == ErrorMessage("\U0001f600")


# --- properties -------------------------------------------------------------------------

_fragment = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["[", "]", "{", "}", '"', "\\", '\\"', ":", ",", '"a":', "1", "null",
                     "\\ud800", "\\udc00", "\\u", "NaN", "\ud800", '{"type":"olm",']),
    st.tuples(st.sampled_from(["[", '{"a":', '"', "[{", "{"]),
              st.integers(0, 3000)).map(lambda t: t[0] * t[1]),
)
_texts = st.lists(_fragment, max_size=8).map("".join)
_prefixes = st.sampled_from(["", '{"type":"olm","olm":{"type":"key-info","data":',
                             '{"type":"olm","olm":{"type":"error","data":{"error":'])


@settings(max_examples=300, deadline=None)
@given(_prefixes, _texts, st.booleans())
def test_from_json_only_returns_or_raises_malformed(prefix: str, text: str,
                                                    as_bytes: bool) -> None:
    data: str | bytes = prefix + text
    if as_bytes:
        data = data.encode("utf-8", "surrogatepass")
    try:
        msg = envelope.from_json(data)
    except MalformedMessage:
        return
    assert isinstance(msg, envelope.Message)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256) | st.text(max_size=256))
def test_from_json_on_arbitrary_input(data: bytes | str) -> None:
    try:
        envelope.from_json(data)
    except MalformedMessage:
        pass


_leaf = st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6)


@settings(max_examples=300, deadline=None)
@given(_leaf, st.lists(st.sampled_from(["list", "dict"]), max_size=3 * jsonlimits.MAX_DEPTH))
def test_depth_limit_is_exact_for_real_json(leaf: object, levels: list[str]) -> None:
    value: Any = leaf
    for level in levels:
        value = [value] if level == "list" else {"k[": value}
    text = json.dumps(value)
    if len(levels) <= jsonlimits.MAX_DEPTH:
        assert jsonlimits.loads(text) == value
    else:
        with pytest.raises(MalformedMessage):
            jsonlimits.loads(text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='[]{}",:\\ 1a', max_size=80))
def test_scan_agrees_with_json(text: str) -> None:
    """Wherever json.loads succeeds, loads gives the same value below the limit and a
    MalformedMessage above it; wherever json.loads fails, loads raises MalformedMessage."""
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(MalformedMessage):
            jsonlimits.loads(text)
        return
    if _depth(expected) <= 3:
        assert jsonlimits.loads(text, max_depth=3) == expected
    else:
        with pytest.raises(MalformedMessage):
            jsonlimits.loads(text, max_depth=3)

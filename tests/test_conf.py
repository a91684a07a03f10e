"""framecrypt.conf: defaults, layering (file < env < kwargs), strict checking, errors
that name key and source without echoing secrets, pickling."""

from __future__ import annotations

import dataclasses
import datetime
import doctest
import pickle
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import framecrypt.conf as conf
from framecrypt.conf import (
    SECTIONS,
    ConfigError,
    IpcSettings,
    LimitsSettings,
    LivekitSettings,
    PoolSettings,
    Settings,
    SFrameSettings,
    SupervisionSettings,
    env_var,
    load_settings,
    parse_size,
)
from framecrypt.errors import FramecryptError

MiB = 1 << 20

# A non-default, valid value for every key (each section alone also passes the
# cross-field rules with the other sections at their defaults).
ALT: dict[str, dict[str, Any]] = {
    "pool": {"workers": 3, "transport": "ipc", "format": "sframe", "placement": "pool",
             "name": "gw-1.a_b", "worker_sched": "idle"},
    "batch": {"max_frames": 32, "max_bytes": 65536, "flush": "idle"},
    "limits": {"max_frames_in_flight": 8192, "max_bytes_in_flight": 128 * MiB,
               "worker_frames_in_flight": 2048, "worker_bytes_in_flight": 32 * MiB,
               "max_frame_bytes": 2 * MiB, "on_overload": "reject"},
    "shm": {"ring_bytes": 16 * MiB, "dir": "/run/shm"},
    "ipc": {"dir": "/run/user/1000/fc"},
    "supervision": {"heartbeat_interval_s": 0.5, "heartbeat_liveness": 3,
                    "dispatch_attempts": 2, "respawn_backoff_s": 0.2,
                    "respawn_backoff_max_s": 2.0, "shutdown_timeout_s": 1.5},
    "realtime": {"latency_budget_ms": 150},
    "livekit": {"ratchet_window": 4, "failure_tolerance": -1, "keyring_size": 32,
                "ratchet_salt": "MySalt", "sif_trailer": "deadbeef", "iv": "livekit",
                "strip_lkts": False},
    "sframe": {"suite": 1, "ratchet_bits": 8},
    "metrics": {"http_port": 9100, "http_addr": "0.0.0.0", "participant_labels": 10,
                "label_max_chars": 32, "streams_per_participant": 4,
                "recover_after_frames": 30},
    "placement": {"inline_max_bytes": 4096, "inline_budget": 0.25},
    "remote": {"listen": "tcp://*:5555", "secret_key_file": "/etc/fc/broker.key_secret",
               "allowed_keys_dir": "/etc/fc/workers"},
}


def toml_dump(data: Mapping[str, Mapping[str, Any]]) -> str:
    """Just enough TOML for flat sections of str/int/float/bool."""
    out = []
    for sec, table in data.items():
        out.append(f"[{sec}]")
        for k, v in table.items():
            if isinstance(v, bool):
                out.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, str):
                out.append(f'{k} = "{v}"')
            else:
                out.append(f"{k} = {v!r}")
    return "\n".join(out) + "\n"


def write(tmp_path: Path, text: str, name: str = "fc.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def env_text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


# --- defaults ------------------------------------------------------------------------------


def test_defaults_load_and_validate() -> None:
    s = load_settings(env={})
    assert s == Settings() == conf.default_settings()
    assert s.pool.transport == "shm" and s.batch.max_frames == 64
    assert s.batch.max_bytes == 102400 and s.limits.on_overload == "wait"
    assert s.shm.ring_bytes == 32 * MiB and s.supervision.heartbeat_interval_s == 0.25
    assert s.sframe.suite == 4 and not s.sframe.provisional
    assert set(s.as_dict()) == set(SECTIONS)


def _defaults_toml_text() -> str:
    return resources.files("framecrypt.conf").joinpath("defaults.toml").read_text("utf-8")


def test_defaults_toml_and_dataclass_defaults_agree() -> None:
    data = tomllib.loads(_defaults_toml_text())
    assert list(data) == list(SECTIONS)  # same sections, same order
    for sec, cls in SECTIONS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        assert list(data[sec]) == list(fields), sec
        for name, f in fields.items():
            toml_value = data[sec][name]
            assert toml_value == f.default, f"{sec}.{name}"
            assert type(toml_value) is type(f.default), f"{sec}.{name}"


def test_every_default_key_is_commented() -> None:
    lines = _defaults_toml_text().splitlines()
    keys = 0
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            keys += 1
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"
    fields = [dataclasses.fields(c) for c in SECTIONS.values()]  # type: ignore[arg-type]
    assert keys == sum(len(f) for f in fields)


def test_alt_values_cover_every_key_and_differ_from_defaults() -> None:
    d = Settings().as_dict()
    assert {s: set(t) for s, t in ALT.items()} == {s: set(t) for s, t in d.items()}
    for sec, table in ALT.items():
        for k, v in table.items():
            if k != "flush":  # one allowed value so far
                assert v != d[sec][k], f"{sec}.{k}"


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("section", list(SECTIONS))
def test_section_round_trips_through_file_env_and_kwargs(tmp_path: Path, section: str) -> None:
    alt = ALT[section]
    want = Settings().as_dict()
    want[section] = dict(alt)

    from_file = load_settings(write(tmp_path, toml_dump({section: alt})), env={})
    assert from_file.as_dict() == want

    env = {env_var(section, k): env_text(v) for k, v in alt.items()}
    from_env = load_settings(env=env)
    assert from_env.as_dict() == want

    kws = {f"{section}__{k}": v for k, v in alt.items()}
    assert load_settings(env={}, **kws).as_dict() == want
    assert Settings().replace(**kws).as_dict() == want
    assert getattr(from_file, section) == SECTIONS[section](**alt)


def test_whole_settings_round_trip_via_as_dict(tmp_path: Path) -> None:
    s = load_settings(env={}, **{f"{sec}__{k}": v for sec, t in ALT.items() for k, v in t.items()
                                 if sec != "shm"})
    again = load_settings(write(tmp_path, toml_dump(s.as_dict())), env={})
    assert again == s
    for sec in SECTIONS:
        assert getattr(again, sec) == SECTIONS[sec](**s.as_dict()[sec])


def test_pickle_and_hash() -> None:
    s = load_settings(env={}, workers=2, sif_trailer="00ff", ratchet_bits=4)
    for obj in (s, *(getattr(s, sec) for sec in SECTIONS)):
        back = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == obj and type(back) is type(obj) and hash(back) == hash(obj)
    assert pickle.loads(pickle.dumps(s)).livekit.sif_trailer_bytes == b"\x00\xff"


def test_frozen_and_slotted() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.pool.workers = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.pool = PoolSettings()  # type: ignore[misc]
    assert not hasattr(s, "__dict__") and not hasattr(s.pool, "__dict__")


# --- precedence ----------------------------------------------------------------------------


def test_precedence_file_env_kwargs(tmp_path: Path) -> None:
    path = write(tmp_path, '[pool]\nworkers = 8\ntransport = "ipc"\nformat = "jitsi"\n'
                           '[limits]\non_overload = "reject"\n')
    env = {"FRAMECRYPT_POOL__WORKERS": "4", "FRAMECRYPT_POOL__TRANSPORT": "inline"}
    s = load_settings(path, env=env, transport="shm")
    assert s.pool.workers == 4  # env over file
    assert s.pool.transport == "shm"  # kwargs over env
    assert s.pool.format == "jitsi"  # file over defaults
    assert s.limits.on_overload == "reject"
    assert s.batch.max_frames == 64  # defaults


def test_config_env_var_names_the_file(tmp_path: Path) -> None:
    a = write(tmp_path, "[pool]\nworkers = 5\n", "a.toml")
    b = write(tmp_path, "[pool]\nworkers = 6\n", "b.toml")
    assert load_settings(env={"FRAMECRYPT_CONFIG": str(a)}).pool.workers == 5
    assert load_settings(b, env={"FRAMECRYPT_CONFIG": str(a)}).pool.workers == 6  # path wins
    assert load_settings(env={"FRAMECRYPT_CONFIG": ""}).pool.workers == 0
    with pytest.raises(ConfigError) as e:
        load_settings(env={"FRAMECRYPT_CONFIG": str(tmp_path / "missing.toml")})
    assert "FRAMECRYPT_CONFIG" in str(e.value) and "missing.toml" in str(e.value)


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMECRYPT_POOL__WORKERS", "7")
    monkeypatch.setenv("FRAMECRYPT_SOMETHING_ELSE", "ignored")
    assert load_settings().pool.workers == 7
    assert load_settings(env={}).pool.workers == 0


def test_env_names_are_case_insensitive_after_prefix_and_others_ignored() -> None:
    s = load_settings(env={"FRAMECRYPT_pool__Workers": "2", "FRAMECRYPT_LOG_LEVEL": "debug",
                           "OTHER__POOL__WORKERS": "x"})
    assert s.pool.workers == 2


def test_env_value_parsing() -> None:
    def one(sec: str, key: str, text: str) -> Any:
        return getattr(getattr(load_settings(env={env_var(sec, key): text}), sec), key)

    assert one("pool", "workers", " 12 ") == 12
    assert one("sframe", "suite", "0x5") == 5
    assert one("shm", "ring_bytes", "64MiB") == 64 * MiB
    assert one("batch", "max_bytes", "100KB") == 100_000
    assert one("supervision", "shutdown_timeout_s", "2") == 2.0
    for text, want in [("true", True), ("False", False), ("1", True), ("0", False),
                       ("yes", True), ("NO", False), ("on", True), ("off", False)]:
        assert one("livekit", "strip_lkts", text) is want
    assert one("livekit", "ratchet_salt", " spaced ") == " spaced "


def test_kwargs_forms_and_none_is_not_given() -> None:
    s = load_settings(env={"FRAMECRYPT_POOL__WORKERS": "3"}, workers=None, shm__dir="/run/x",
                      ipc__dir=Path("/run/y"), placement="inline", placement__inline_budget=0)
    assert s.pool.workers == 3 and s.shm.dir == "/run/x" and s.ipc.dir == "/run/y"
    assert s.pool.placement == "inline" and s.placement.inline_budget == 0.0
    assert isinstance(s.placement.inline_budget, float)


def test_replace_is_checked_and_leaves_original() -> None:
    s = Settings()
    t = s.replace(workers=2, limits__on_overload="reject")
    assert (t.pool.workers, t.limits.on_overload) == (2, "reject")
    assert s.pool.workers == 0 and s.replace() == s
    with pytest.raises(ConfigError) as e:
        t.replace(max_frame_bytes=128 * MiB)
    msg = str(e.value)
    assert "limits.max_frame_bytes" in msg and "Settings.replace()" in msg
    assert "limits.worker_bytes_in_flight" in msg


# --- bad values ----------------------------------------------------------------------------

# (section, key, toml literal, env text or None, kwarg value or None)
BAD: list[tuple[str, str, str, str | None, Any]] = [
    ("pool", "workers", "true", "yes", True),  # bool is not an int
    ("pool", "workers", "2.0", "2.0", 2.0),
    ("pool", "workers", '"4"', "four", "4"),
    ("pool", "workers", "-1", "-1", -1),
    ("pool", "workers", "1025", "1025", 1025),
    ("pool", "transport", '"tcp"', "SHM", "zmq"),
    ("pool", "transport", "1", None, 1),
    ("pool", "format", '"jfame"', "sframes", "lk"),
    ("pool", "placement", '"Auto"', "", None),
    ("pool", "name", '"has space"', "-lead", "x" * 33),
    ("batch", "max_frames", "0", "", 0),
    ("batch", "max_bytes", '"100 parsecs"', "1.5B", "12QB"),
    ("batch", "max_bytes", "[1, 2]", "0", {"a": 1}),
    ("batch", "flush", '"eager"', "now", "never"),
    ("limits", "max_frame_bytes", '"2GiB"', "0", 2**31),
    ("limits", "on_overload", '"drop"', "rejct", "block"),
    ("shm", "ring_bytes", '"1KiB"', "1000", 65535),
    ("shm", "dir", '"relative/dir"', "shm", ""),
    ("shm", "dir", '"/dev/\\u0000shm"', None, Path("rel")),
    ("ipc", "dir", '"/' + "x" * 90 + '"', "tmp", 42),
    ("supervision", "heartbeat_interval_s", "0", "nan", 0.0),
    ("supervision", "heartbeat_interval_s", "inf", "-0.1", float("inf")),
    ("supervision", "heartbeat_interval_s", "1979-05-27", "x", "0.25"),
    ("supervision", "dispatch_attempts", "0", "101", 0),
    ("realtime", "latency_budget_ms", "-5", "60001", 1.5),
    ("livekit", "failure_tolerance", "-2", "-2", False),
    ("livekit", "iv", '"random"', "Counter", "livekitt"),
    ("livekit", "strip_lkts", "1", "maybe", 1),
    ("sframe", "suite", "0", "9", 0x10),
    ("sframe", "ratchet_bits", "64", "-1", 64),
    ("metrics", "http_port", "65536", "http", -1),
    ("metrics", "http_addr", '"not a host!"', "", "a..b"),
    ("placement", "inline_budget", "1.5", "-0.5", True),
    ("placement", "inline_max_bytes", "-1", "1.25", 2**31),
]


def _check(e: ConfigError, key: str, source_part: str) -> None:
    msg = str(e)
    assert isinstance(e, FramecryptError) and isinstance(e, ValueError)
    assert e.key == key and key in msg, msg
    assert e.source is not None and source_part in e.source and source_part in msg, msg
    assert "allowed:" in msg, msg


@pytest.mark.parametrize(("sec", "key", "lit", "env", "kw"), BAD,
                         ids=[f"{b[0]}.{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_value_names_key_and_source(tmp_path: Path, sec: str, key: str, lit: str,
                                        env: str | None, kw: Any) -> None:
    dotted = f"{sec}.{key}"
    path = write(tmp_path, f"[{sec}]\n{key} = {lit}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    _check(e.value, dotted, str(path))
    if env is not None:
        name = env_var(sec, key)
        with pytest.raises(ConfigError) as e:
            load_settings(env={name: env})
        _check(e.value, dotted, f"environment variable {name}")
    if kw is not None:
        with pytest.raises(ConfigError) as e:
            load_settings(env={}, **{f"{sec}__{key}": kw})
        _check(e.value, dotted, f"keyword argument {sec}__{key}=")
        with pytest.raises(ConfigError) as e:
            Settings().replace(**{f"{sec}__{key}": kw})
        _check(e.value, dotted, "Settings.replace()")
        with pytest.raises(ConfigError) as e:
            SECTIONS[sec](**{key: kw})
        _check(e.value, dotted, f"{SECTIONS[sec].__name__}(...)")


def test_bad_value_messages_say_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match=r'got \'drop\'.*one of "wait", "reject"'):
        load_settings(env={}, on_overload="drop")
    with pytest.raises(ConfigError, match=r'did you mean "shm"'):
        load_settings(env={}, transport="shmm")
    with pytest.raises(ConfigError, match=r"got a boolean, which is not an integer"):
        load_settings(env={}, workers=False)
    with pytest.raises(ConfigError, match=r"an integer 0\.\.1024 \(0 = os.cpu_count\(\)\)"):
        load_settings(env={"FRAMECRYPT_POOL__WORKERS": "many"})
    with pytest.raises(ConfigError, match=r"not a whole number|not a size"):
        load_settings(env={}, max_bytes="1.0001KiB")


def test_sizes() -> None:
    cases = {"4096": 4096, "32MiB": 32 * MiB, "32 mib": 32 * MiB, "100KB": 100_000,
             "1.5GiB": 3 * (1 << 29), "2gb": 2 * 10**9, "1_024 B": 1024, "1TiB": 1 << 40}
    for text, want in cases.items():
        assert parse_size(text) == want, text
    for bad in ("", "MiB", "1.5", "-1", "1 MiBs", "0x10", "1e6", "1.0000001KiB", "1 K"):
        with pytest.raises(ValueError):
            parse_size(bad)
    s = load_settings(env={}, ring_bytes="64 MiB", max_frame_bytes="1MiB", inline_max_bytes=0)
    assert (s.shm.ring_bytes, s.limits.max_frame_bytes) == (64 * MiB, MiB)


# --- cross-field rules ---------------------------------------------------------------------

CROSS = [
    ({"worker_frames_in_flight": 20000}, "limits.worker_frames_in_flight",
     "limits.max_frames_in_flight"),
    ({"worker_bytes_in_flight": "512MiB"}, "limits.worker_bytes_in_flight",
     "limits.max_bytes_in_flight"),
    ({"max_frame_bytes": "128MiB", "ring_bytes": "256MiB"}, "limits.max_frame_bytes",
     "limits.worker_bytes_in_flight"),
    ({"max_frames": 5000}, "batch.max_frames", "limits.worker_frames_in_flight"),
    ({"max_bytes": "65MiB", "ring_bytes": "512MiB"}, "batch.max_bytes",
     "limits.worker_bytes_in_flight"),
    ({"max_bytes": "1MiB", "ring_bytes": "3MiB", "max_frame_bytes": "1MiB"},
     "shm.ring_bytes", "batch.max_bytes"),
    ({"ring_bytes": "4MiB"}, "shm.ring_bytes", "limits.max_frame_bytes"),
    ({"respawn_backoff_s": 6}, "supervision.respawn_backoff_s",
     "supervision.respawn_backoff_max_s"),
]


@pytest.mark.parametrize(("kw", "key", "other"), CROSS, ids=[c[1] + "/" + c[2] for c in CROSS])
def test_cross_field_rules(kw: dict[str, Any], key: str, other: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={}, **kw)
    msg = str(e.value)
    assert e.value.key == key and key in msg and other in msg, msg
    assert "(from keyword argument " in msg and "allowed:" in msg, msg


def test_cross_field_sources_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax_frames_in_flight = 100\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={"FRAMECRYPT_LIMITS__WORKER_FRAMES_IN_FLIGHT": "200"})
    msg = str(e.value)
    assert "environment variable FRAMECRYPT_LIMITS__WORKER_FRAMES_IN_FLIGHT" in msg
    assert str(path) in msg and "200" in msg and "100" in msg


def test_shm_ring_rules_only_with_shm_transport() -> None:
    assert load_settings(env={}, transport="ipc", ring_bytes="1MiB").shm.ring_bytes == MiB
    with pytest.raises(ConfigError, match=r"shm\.ring_bytes"):
        load_settings(env={}, ring_bytes="1MiB")


def test_direct_construction_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"PoolSettings\(\.\.\.\)"):
        PoolSettings(workers=-1)
    with pytest.raises(ConfigError, match=r"Settings\(\.\.\.\).*limits.max_frames_in_flight"):
        Settings(limits=LimitsSettings(max_frames_in_flight=10))
    with pytest.raises(ConfigError, match="allowed: a PoolSettings"):
        Settings(pool=LimitsSettings())  # type: ignore[arg-type]
    sup = SupervisionSettings(shutdown_timeout_s=2)
    assert sup.shutdown_timeout_s == 2.0 and isinstance(sup.shutdown_timeout_s, float)
    assert LivekitSettings(sif_trailer="ABCD").sif_trailer == "abcd"


# --- unknown names -------------------------------------------------------------------------

UNKNOWN_FILE = [
    ("[pol]\nworkers = 1\n", "pol", "did you mean [pool]?"),
    ("[pool]\nworkrs = 1\n", "pool.workrs", "did you mean pool.workers?"),
    ("[batch]\nmax_frame_bytes = 1\n", "batch.max_frame_bytes",
     "did you mean limits.max_frame_bytes?"),
    ("[supervision]\nheartbeat_intervl = 1.0\n", "supervision.heartbeat_intervl",
     "did you mean supervision.heartbeat_interval_s?"),
    ("workers = 1\n", "workers", "inside a section, e.g. workers in [pool]"),
    ("pool = 1\n", "pool", "allowed: a table [pool]"),
    ("[Livekit]\nkeyring_size = 1\n", "Livekit", "did you mean [livekit]?"),
]


@pytest.mark.parametrize(("text", "key", "hint"), UNKNOWN_FILE)
def test_unknown_names_in_file_suggest(tmp_path: Path, text: str, key: str, hint: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    assert e.value.key == key and hint in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize(("name", "hint"), [
    ("FRAMECRYPT_POOL__WORKRS", "did you mean FRAMECRYPT_POOL__WORKERS?"),
    ("FRAMECRYPT_POL__WORKERS", "did you mean FRAMECRYPT_POOL__WORKERS?"),
    ("FRAMECRYPT_BATCH__MAX_FRAME_BYTES", "did you mean FRAMECRYPT_LIMITS__MAX_FRAME_BYTES?"),
    ("FRAMECRYPT_POOL_WORKERS", "did you mean FRAMECRYPT_POOL__WORKERS?"),
    ("FRAMECRYPT_LIMITS_ON_OVERLOAD", "did you mean FRAMECRYPT_LIMITS__ON_OVERLOAD?"),
])
def test_unknown_env_names_suggest(name: str, hint: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={name: "1"})
    assert hint in str(e.value) and name in str(e.value)
    assert e.value.source == f"environment variable {name}"


@pytest.mark.parametrize(("kw", "hint"), [
    ("workrs", "did you mean workers=?"),
    ("on_overlaod", "did you mean on_overload=?"),
    ("pool__workrs", "did you mean pool__workers=?"),
    ("batch__max_frame_bytes", "did you mean limits__max_frame_bytes=?"),
    ("dir", "shm__dir= or ipc__dir="),
    ("limits", "limits__<key>="),
    ("pol__workers", "did you mean pool__workers=?"),
])
def test_unknown_kwargs_suggest(kw: str, hint: str) -> None:
    kws: dict[str, Any] = {kw: 1}
    with pytest.raises(ConfigError) as e:
        load_settings(env={}, **kws)
    assert hint in str(e.value) and f"keyword argument {kw}=" in str(e.value)
    with pytest.raises(ConfigError) as e:
        Settings().replace(**kws)
    assert hint in str(e.value)


# --- files ---------------------------------------------------------------------------------


def test_file_errors(tmp_path: Path) -> None:
    for path, what in [
        (tmp_path / "nope.toml", "cannot read"),
        (tmp_path, "cannot read"),  # a directory
        (write(tmp_path, "[pool\nworkers = 1\n", "syntax.toml"), "is not valid TOML"),
        (write(tmp_path, "", "x.toml"), None),
    ]:
        if what is None:
            assert load_settings(path, env={}) == Settings()
            continue
        with pytest.raises(ConfigError) as e:
            load_settings(path, env={})
        assert what in str(e.value) and str(path) in str(e.value)
        assert e.value.source == f"file {path}"
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[pool]\nname = "\xe9"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, env={})
    with pytest.raises(ConfigError, match="path"):
        load_settings(42, env={})  # type: ignore[arg-type]


# --- secrets -------------------------------------------------------------------------------

SECRET = "zz5ecret5auce"


def test_sensitive_values_are_never_echoed(tmp_path: Path) -> None:
    attempts: list[Any] = [
        lambda: load_settings(env={}, sif_trailer=SECRET),
        lambda: load_settings(env={"FRAMECRYPT_LIVEKIT__SIF_TRAILER": SECRET}),
        lambda: load_settings(write(tmp_path, f'[livekit]\nsif_trailer = "{SECRET}"\n'),
                              env={}),
        lambda: load_settings(env={}, sif_trailer="ab" * 257),
        lambda: load_settings(env={}, ratchet_salt=SECRET * 30),
        lambda: load_settings(env={}, ratchet_salt=""),
        lambda: LivekitSettings(sif_trailer=SECRET),
        lambda: Settings().replace(livekit__sif_trailer=SECRET + "0"),
        # unknown keys whose names look secret: the value is not shown either
        lambda: load_settings(write(tmp_path, f'[livekit]\nshared_key = "{SECRET}"\n',
                                    "k.toml"), env={}),
        lambda: load_settings(env={"FRAMECRYPT_LIVEKIT__PASSPHRASE": SECRET}),
        lambda: load_settings(env={}, key_material=SECRET),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigError) as e:
            attempt()
        assert SECRET not in str(e.value) and SECRET not in repr(e.value), str(e.value)
        assert "livekit" in str(e.value) or "key_material" in str(e.value)
    # a key whose *name* contains "key" (keyring_size) has its value hidden as well
    with pytest.raises(ConfigError) as e:
        load_settings(env={"FRAMECRYPT_LIVEKIT__KEYRING_SIZE": "31337"})
    assert "31337" not in str(e.value) and "livekit.keyring_size" in str(e.value)


def test_sensitive_values_not_in_repr() -> None:
    s = load_settings(env={}, sif_trailer="c0ffee", ratchet_salt=SECRET)
    assert "c0ffee" not in repr(s) and SECRET not in repr(s)
    assert s.livekit.sif_trailer_bytes == bytes.fromhex("c0ffee")
    assert s.livekit.ratchet_salt_bytes == SECRET.encode()
    assert s.as_dict()["livekit"]["ratchet_salt"] == SECRET  # as_dict is the caller's own


# --- helpers and docs ----------------------------------------------------------------------


def test_derived_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PoolSettings(workers=3).resolved_workers() == 3
    assert PoolSettings().resolved_workers() >= 1
    assert IpcSettings(dir="/run/fc").resolved_dir() == "/run/fc"
    assert IpcSettings().resolved_dir({"XDG_RUNTIME_DIR": "/run/user/7"}) == \
        "/run/user/7/framecrypt"
    assert IpcSettings().resolved_dir({}).startswith("/tmp/framecrypt-")
    assert IpcSettings().resolved_dir({"XDG_RUNTIME_DIR": "relative"}).startswith("/tmp/")
    assert LivekitSettings().sif_trailer_bytes is None
    assert [SFrameSettings(suite=n).provisional for n in range(1, 9)] == [False] * 5 + [True] * 3


def test_value_kinds_accepted() -> None:
    s = load_settings(env={}, http_addr="::1", name="", ratchet_bits=63, suite=8,
                      failure_tolerance=-1, inline_budget=1, latency_budget_ms=0)
    assert s.metrics.http_addr == "::1" and s.sframe.provisional
    assert load_settings(env={}, http_addr="metrics.example.org").metrics.http_addr
    with pytest.raises(ConfigError, match=r"metrics\.http_addr"):
        load_settings(env={}, http_addr="-bad-.example")


def test_datetime_is_a_type_error(tmp_path: Path) -> None:
    assert isinstance(tomllib.loads("a = 1979-05-27")["a"], datetime.date)
    with pytest.raises(ConfigError, match="got a date/time"):
        load_settings(write(tmp_path, "[realtime]\nlatency_budget_ms = 1979-05-27\n"), env={})


def test_module_docstring_example_runs() -> None:
    result = doctest.testmod(conf, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_tcp_without_curve_keys_is_refused() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={}, listen="tcp://127.0.0.1:5555")
    assert "CURVE" in str(e.value) and e.value.key == "remote.listen"
    with pytest.raises(ConfigError):
        load_settings(env={}, listen="udp://127.0.0.1:5555")
    s = load_settings(env={}, listen="tcp://127.0.0.1:5555", secret_key_file="/k/b.key_secret",
                      allowed_keys_dir="/k/workers")
    assert s.remote.listen == "tcp://127.0.0.1:5555"

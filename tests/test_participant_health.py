"""Per-participant observability: counts per participant and stream through real pools,
health transition events, bounded and sanitized Prometheus labels, the rich table."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from pool_helpers import key_for, run
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from framecrypt import Frame, Pool, livekit
from framecrypt.batch import FrameBatch
from framecrypt.broker.health import OTHER, ParticipantHealth, sanitize_label
from framecrypt.broker.metrics import render
from framecrypt.errors import FramecryptError
from framecrypt.progress import participants_table

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def series(smp: Samples, name: str) -> Iterator[tuple[dict[str, str], float]]:
    for (n, labels), v in smp.items():
        if n == name:
            yield dict(labels), v


def tamper(sealed: bytes, i: int) -> bytes:
    """Frame i of a batch, spoiled in a way that depends on i (or left alone)."""
    if i % 5 == 1:  # a flipped ciphertext byte
        return sealed[:12] + bytes([sealed[12] ^ 1]) + sealed[13:]
    if i % 7 == 3:  # a key index nobody set
        return sealed[:-1] + b"\x05"
    if i % 11 == 4:  # too short to hold a trailer
        return sealed[:1]
    return sealed


def truth(results: list[Any], frames: list[Frame]) -> dict[int, Counter[str]]:
    """ssrc -> Counter of "ok" and error class names, from the call's own results."""
    out: dict[int, Counter[str]] = {}
    for r, f in zip(results, frames, strict=True):
        out.setdefault(f.ssrc, Counter())["ok" if isinstance(r, bytes)
                                          else type(r).__name__] += 1
    return out


# --- counts through real pools ---------------------------------------------------------


@pytest.mark.parametrize("placement", ["pool", "inline", "auto"])
def test_counts_per_participant_and_stream_after_mixed_batches(placement: str) -> None:
    async def main() -> None:
        async with Pool(workers=2, transport="shm", placement=placement,
                        failure_tolerance=-1, ratchet_window=0, max_frames_in_flight=64,
                        worker_frames_in_flight=32, max_frames=16) as pool:
            want: dict[tuple[str, str, int], Counter[str]] = {}

            def note(name: str, direction: str, results: list[Any], frames: list[Frame]) -> None:
                for ssrc, c in truth(results, frames).items():
                    want.setdefault((name, direction, ssrc), Counter()).update(c)

            for name in ("alice", "bob"):
                await pool.set_key(name, key_for(name))
                frames = [Frame(bytes([i]) * (50 + i), "opus" if i % 3 == 0 else "vp8",
                                ssrc=12 if i % 3 == 0 else 11, timestamp=i) for i in range(90)]
                sealed = await pool.encrypt_many(name, frames)
                note(name, "seal", sealed, frames)
                spoiled = [Frame(tamper(s, i), f.codec, ssrc=f.ssrc)
                           for i, (s, f) in enumerate(zip(sealed, frames, strict=True))]
                for lo in range(0, 90, 30):  # several calls, several worker batches
                    part = spoiled[lo:lo + 30]
                    note(name, "open", await pool.decrypt_many(name, part,
                                                               return_exceptions=True), part)
            nokey = [Frame(bytes(40), "vp8", ssrc=3) for _ in range(5)]
            note("carol", "seal", await pool.encrypt_many("carol", nokey,
                                                          return_exceptions=True), nokey)
            # refused for want of credit: counted for the participant too
            big = [Frame(bytes(30), "vp8", ssrc=9) for _ in range(200)]
            res = await pool.encrypt_batch("alice", FrameBatch.from_frames(big), wait=False)
            note("alice", "seal", list(res), big)
            if placement == "pool":  # inline frames give their credit back at once
                assert "Overloaded" in want[("alice", "seal", 9)]

            got = pool.participant_stats()
            assert set(got) == {"alice", "bob", "carol"}
            seen: dict[tuple[str, str, int], Counter[str]] = {}
            for p in got.values():
                for s in p.streams:
                    c = Counter(dict(s.errors))
                    c["ok"] = s.frames_ok
                    seen[(p.participant, s.direction, s.ssrc)] = +c
                    assert s.frames_failed == sum(s.errors.values())
                    assert s.codec == ("opus" if s.ssrc == 12 else "vp8")
                    assert s.kind == ("audio" if s.ssrc == 12 else "video")
                assert p.frames_ok == sum(s.frames_ok for s in p.streams)
            assert seen == want
            reasons = {r for c in want.values() for r in c} - {"ok"}
            assert {"AuthenticationFailed", "UnknownKey", "MalformedFrame"} <= reasons
            st = pool.stats()
            assert st["frames_ok"] == sum(c["ok"] for c in want.values())
            assert st["frames_failed"] == sum(c.total() - c["ok"] for c in want.values())
            # the same numbers in the exposition
            smp = samples(render(pool))
            total = Counter[tuple[str, str]]()
            for labels, v in series(smp, "framecrypt_participant_frames_total"):
                total[(labels["participant"], labels["outcome"])] += int(v)
            assert total[("alice", "ok")] == sum(c["ok"] for k, c in want.items()
                                                 if k[0] == "alice")
            assert total[("bob", "failed")] == sum(c.total() - c["ok"] for k, c in want.items()
                                                   if k[0] == "bob")
            assert total[(OTHER, "ok")] == total[(OTHER, "failed")] == 0

    run(main)


def test_streams_past_the_cap_are_counted_together() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="pool",
                        streams_per_participant=4) as pool:
            await pool.set_key("a", key_for("a"))
            frames = [Frame(bytes(20), "vp8", ssrc=100 + i % 10) for i in range(50)]
            await pool.encrypt_many("a", frames)
            streams = pool.participant_stats()["a"].streams
            assert sorted(s.ssrc for s in streams) == [-1, 100, 101, 102, 103]
            over = next(s for s in streams if s.ssrc == -1)
            assert over.frames_ok == 30 and over.kind == "other"

    run(main)


# --- events ----------------------------------------------------------------------------


def test_health_events_fire_on_transitions_only() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="pool",
                        recover_after_frames=4, failure_tolerance=-1, ratchet_window=0) as pool:
            events: list[ParticipantHealth] = []
            pool.on_health(events.append)
            streamed: list[ParticipantHealth] = []

            async def collect() -> None:
                async for ev in pool.health_events():
                    streamed.append(ev)
                    if len(streamed) == 4:
                        return

            reader = asyncio.ensure_future(collect())
            await pool.set_key("a", key_for("a"))
            good = await pool.encrypt_many("a", [Frame(bytes([1, i]) * 30, "vp8", ssrc=7)
                                                 for i in range(40)])
            assert events == []  # sealing went well: nothing to say
            bad = [g[:12] + bytes([g[12] ^ 1]) + g[13:] for g in good]

            # one batch: ok x5, bad x3, ok x2, bad x1, ok x6 -> failing, then recovered
            pattern = good[:5] + bad[5:8] + good[8:10] + bad[10:11] + good[11:17]
            await pool.decrypt_many("a", [Frame(d, "vp8", ssrc=7) for d in pattern],
                                    return_exceptions=True)
            assert [(e.state, e.reason, e.failed) for e in events] == [
                ("failing", "AuthenticationFailed", 4), ("recovered", "AuthenticationFailed", 4)]

            # frame by frame: a failure, 100 more, 3 ok (not enough), a failure, 4 ok
            async def one(data: bytes) -> None:
                try:
                    await pool.decrypt("a", Frame(data, "vp8", ssrc=7))
                except FramecryptError:
                    pass

            for d in [bad[20]] * 101 + good[21:24] + [bad[24]] + good[25:29]:
                await one(d)
            assert [(e.state, e.failed) for e in events[2:]] == [("failing", 1),
                                                                 ("recovered", 102)]
            last = events[-1]
            assert (last.participant, last.label, last.direction, last.ssrc, last.codec,
                    last.kind) == ("a", "a", "open", 7, "vp8", "video")
            assert last.frames_failed == 4 + 102 and last.frames_ok == 13 + 7
            await asyncio.wait_for(reader, 10)
            assert streamed == events
            assert not pool.participant_stats()["a"].failing

    run(main)


# --- bounded, sanitized labels ---------------------------------------------------------


def hostile(i: int) -> str:
    kinds = (
        f"p{i}",
        f'"q{i}\\\n}}',
        "x" * 5000 + str(i),
        f"\u202e{i}gnp.exe",
        f"\ud800{i}",  # refused at the boundary (InvalidArgument): never counted
        f"{i}~deadbeef",
        f"\x1b[31m{i}\x1b[0m",
        f"é{i}🙂",
        f"\t{i}",
        f"[bold]{i}[/]",
    )
    return kinds[i % len(kinds)]


class Tripwire(dict[int, Any]):
    """The book's table of every participant: a scrape must not walk it."""

    def _trip(self, *a: object) -> Any:
        raise AssertionError("a scrape walked every participant")

    values = items = keys = __iter__ = _trip  # type: ignore[assignment]


def test_ten_thousand_hostile_ids_stay_within_the_label_cap() -> None:
    names = [hostile(i) for i in range(10_000)] + ["", OTHER]
    assert len(set(names)) == len(names)

    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="pool",
                        participant_labels=50, label_max_chars=24) as pool:
            why: Counter[str] = Counter()
            for lo in range(0, len(names), 500):
                got = await asyncio.gather(*(pool.encrypt(n, Frame(bytes(8), "vp8", ssrc=1))
                                             for n in names[lo:lo + 500]),
                                           return_exceptions=True)
                why.update(type(e).__name__ for e in got)
            assert why == {"UnknownKey": 9002, "InvalidArgument": 1000}
            book = pool.service.ledger.health
            everyone = book._parts
            book._parts = Tripwire(everyone)  # type: ignore[assignment]
            text = render(pool)
            book._parts = everyone
            smp = samples(text)
            labels = {lb["participant"] for lb, _ in
                      series(smp, "framecrypt_participant_frames_total")}
            assert len(labels) == 51 and OTHER in labels
            for lb in labels:
                assert len(lb) <= 24 and lb.isprintable(), lb
            frames = list(series(smp, "framecrypt_participant_frames_total"))
            valid = [n for n in names if "\ud800" not in n]
            assert sum(v for _, v in frames) == len(valid) == pool.stats()["frames_failed"]
            assert pool.stats()["frames_in_flight"] == 0
            assert all(lb["outcome"] == "failed" for lb, _ in frames)
            assert all(lb["reason"] == "UnknownKey" for lb, _ in
                       series(smp, "framecrypt_participant_errors_total"))
            assert value_of(smp, "framecrypt_participants_labelled") == 50
            # bounded exposition: 51 participants x (frames, errors, 2 failing gauges)
            assert sum(1 for k in smp if k[0].startswith("framecrypt_participant_")) <= 51 * 4
            assert len(text) < 60_000
            stats = pool.participant_stats()
            assert len(stats) == len(valid)
            own = [p.label for p in stats.values() if p.label != OTHER]
            assert len(own) == len(set(own)) == 50
            assert stats[OTHER].label == OTHER  # the id "_other" did not get the label
            json.dumps(pool.stats()["participant_metrics"])  # plain data

    run(main, timeout=180)


def value_of(smp: Samples, name: str, **labels: str) -> float:
    return smp[(name, frozenset(labels.items()))]


def test_sanitize_label() -> None:
    assert sanitize_label("alice") == "alice"
    assert sanitize_label("Zoë 🙂 #1") == "Zoë 🙂 #1"
    for name in ('a"b', "a\\b", "a\nb", "a\x00b", "\u202eabc", "a~b", "\ud800", "", OTHER,
                 "\x1b[31mred", "x" * 65, "a\u2028b"):
        lb = sanitize_label(name)
        assert lb != name and "~" in lb and len(lb) <= 64, name
        assert lb.isprintable() and not set(lb) & set('"\\')
        lb.encode("utf-8")  # no lone surrogate left
    # distinct ids that share the kept prefix stay apart
    a, b = sanitize_label("y" * 100 + "1", 20), sanitize_label("y" * 100 + "2", 20)
    assert a != b and len(a) == len(b) == 20
    # an id cannot forge another's hashed label
    forged = sanitize_label("\n")
    assert sanitize_label(forged) != forged


def test_collector_sanitizes_what_any_stats_source_gives() -> None:
    class Fake:
        def stats(self) -> dict[str, Any]:
            return {"participant_metrics": {
                "frames": [{"participant": 'x"\n\ud800', "direction": "open", "kind": "video",
                            "outcome": "ok", "value": 3},
                           {"participant": "ok-name", "direction": "seal", "kind": "audio",
                            "outcome": "failed", "value": "not a number"}],
                "errors": [{"participant": "e", "direction": "open", "reason": "A\x07B",
                            "value": 1}],
                "failing": "not a list", "labelled": 1}}

    smp = samples(render(Fake()))
    rows = list(series(smp, "framecrypt_participant_frames_total"))
    assert len(rows) == 1 and rows[0][1] == 3
    assert rows[0][0]["participant"] == sanitize_label('x"\n\ud800', 256)
    (err, _), = series(smp, "framecrypt_participant_errors_total")
    assert err["reason"] == sanitize_label("A\x07B", 256)


def test_a_removed_participant_frees_its_label_and_counters_only_grow() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="pool",
                        participant_labels=2) as pool:
            async def fail(name: str, n: int) -> None:
                await pool.encrypt_many(name, [Frame(bytes(8), "vp8", ssrc=1)] * n,
                                        return_exceptions=True)

            def failed() -> dict[str, float]:
                return {lb["participant"]: v for lb, v in
                        series(samples(render(pool)), "framecrypt_participant_frames_total")}

            for name in ("a", "b", "c"):
                await fail(name, 3)
            assert failed() == {"a": 3, "b": 3, OTHER: 3}
            await pool.remove_participant("a")
            assert failed() == {"b": 3, OTHER: 3}
            await fail("c", 2)  # c takes the free label; its series starts there
            assert failed() == {"b": 3, "c": 2, OTHER: 3}
            assert pool.participant_stats()["c"].frames_failed == 5
            await fail("a", 1)  # back, without a label now
            assert failed() == {"b": 3, "c": 2, OTHER: 4}
            assert pool.participant_stats()["a"].label == OTHER

    run(main)


# --- no key material, the table --------------------------------------------------------


def test_no_key_material_in_stats_events_metrics_or_table() -> None:
    passphrase = "correct horse battery staple"
    raw = bytes(range(0xA0, 0xC0))
    secrets_ = [passphrase, raw.hex(), raw.decode("latin-1"),
                livekit.derive_key(passphrase).hex(), livekit.derive_key(raw).hex()]

    async def main() -> None:
        async with Pool(workers=1, transport="shm", placement="auto",
                        recover_after_frames=1) as pool:
            events: list[ParticipantHealth] = []
            pool.on_health(events.append)
            await pool.set_key("p", passphrase)
            await pool.set_key("r", raw)
            for name in ("p", "r"):
                sealed = await pool.encrypt_many(name, [Frame(bytes(30), "vp8", ssrc=2)] * 4)
                await pool.decrypt_many(name, [Frame(s[:-3] + b"\x00\x0c\x00", "vp8", ssrc=2)
                                               for s in sealed] + [Frame(sealed[0], "vp8",
                                                                         ssrc=2)],
                                        return_exceptions=True)
            assert events
            console = Console(record=True, width=200)
            console.print(participants_table(pool.participant_stats()))
            blob = "\n".join([repr(pool.participant_stats()), repr(events),
                              render(pool).decode(), json.dumps(pool.stats()),
                              console.export_text()])
            for s in secrets_:
                assert s not in blob

    run(main)


def test_table_shows_hostile_ids_as_text_and_sums_the_rest() -> None:
    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="pool") as pool:
            for name in ("[bold red]x[/]", "\x1b[2J\x1b[31mevil\nline", "alice"):
                await pool.encrypt_many(name, [Frame(bytes(8), "vp8", ssrc=5)] * 3,
                                        return_exceptions=True)
            await pool.set_key("k", key_for("k"))
            await pool.encrypt_many("k", [Frame(bytes(8), "opus", ssrc=6)] * 7)
            console = Console(record=True, width=200, color_system=None)
            console.print(participants_table(pool.participant_stats(), max_rows=3))
            text = console.export_text()
            assert "[bold red]x[/]" in text  # as typed, not markup
            assert "\x1b" not in text and "evil\nline" not in text
            assert "failing (3)" in text
            assert "… 1 more" in text and "1 streams" in text
            lines = text.splitlines()
            assert sum("failing" in ln for ln in lines) == 3  # failing first, k summed

    run(main)


def test_demo_view_shows_the_pool_streams() -> None:
    from framecrypt.demo.ui import render as render_demo

    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="pool") as pool:
            await pool.set_key("alice", key_for("alice"))
            sealed = await pool.encrypt_many("alice", [Frame(b"\x01" * 40, "vp8", ssrc=9)] * 3)
            await pool.set_key("bob<-alice", b"\x02" * 32)  # a wrong key
            await pool.decrypt_many("bob<-alice", [Frame(s, "vp8", ssrc=9) for s in sealed],
                                    return_exceptions=True)
            snap = {"participants": [], "elapsed": 1.0, "duration": 10.0, "relay": {},
                    "pool": {"workers": 1, "frames_ok": 3, "frames_pool": 6,
                             "frames_inline": 0, "bytes_out": 0, "errors": {}},
                    "health": pool.participant_stats()}
            console = Console(record=True, width=200, color_system=None)
            console.print(render_demo(snap, None, "t"))
            text = console.export_text()
            assert "seal vp8 0x00000009" in text and "open vp8 0x00000009" in text
            assert "bob<-alice" in text and "AuthenticationFailed 3" in text
            assert "failing (3)" in text

    run(main)


def test_scrapes_from_the_server_thread_during_traffic_only_see_growing_counters() -> None:
    """The /metrics endpoint reads the books from its own thread while the loop writes
    them (outcomes, new participants taking labels, removals freeing them)."""
    import urllib.request

    from framecrypt.broker.metrics import serve

    async def main() -> None:
        async with Pool(workers=1, transport="inline", placement="auto",
                        participant_labels=8) as pool:
            server = serve(pool, 0)
            url = f"http://127.0.0.1:{server.port}/metrics"
            try:
                done = False
                scrapes: list[Samples] = []

                def scrape_until_done() -> None:
                    while True:
                        with urllib.request.urlopen(url, timeout=10) as r:
                            scrapes.append(samples(r.read()))
                        if done and len(scrapes) >= 3:
                            return

                scraper = asyncio.get_running_loop().run_in_executor(None, scrape_until_done)
                for round_ in range(30):
                    for k in range(6):
                        name = f"u{round_ * 6 + k}"
                        if k % 2:  # half of them fail (no key)
                            await pool.set_key(name, key_for(name))
                        await pool.encrypt_many(name, [Frame(b"\x01" * 30, "vp8", ssrc=k)] * 20,
                                                return_exceptions=True)
                    await pool.remove_participant(f"u{round_ * 6}")
                done = True
                await asyncio.wait_for(scraper, 60)
                # the scraper's last scrape may have begun before the last batch ended:
                # one more, after every batch, is the one the totals are checked on
                await asyncio.get_running_loop().run_in_executor(None, scrape_until_done)
            finally:
                server.close()
            assert len(scrapes) >= 3
            last: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
            for smp in scrapes:
                for key, v in smp.items():
                    if key[0].endswith("_total") and key in last:
                        assert v >= last[key], key
                last.update({k: v for k, v in smp.items() if k[0].endswith("_total")})
                labels = {dict(k[1]).get("participant") for k in smp
                          if k[0] == "framecrypt_participant_frames_total"}
                assert len(labels) <= 9
            # removed labelled participants' series are gone; the rest is all there
            st = pool.stats()
            assert st["frames_ok"] == st["frames_failed"] == 30 * 3 * 20
            exported = sum(v for _, v in series(scrapes[-1],
                                                "framecrypt_participant_frames_total"))
            assert 30 * 6 * 20 - 30 * 20 <= exported <= 30 * 6 * 20

    run(main, timeout=120)

"""TTL and freshness with an injected clock; the staleness guard."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import freshcache


def test_ttl_expiry_by_class_with_injected_clock(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    cache.put("odds:g1:1", b"o")             # 60 s
    cache.put("player_props:2024:18", b"p")  # 5 min
    cache.put("teams:2024", b"t")            # 7 d
    clock.advance(59.999)
    assert cache.get("odds:g1:1") == b"o"
    clock.advance(0.001)                       # exactly at expires_at: stale
    assert cache.get("odds:g1:1") is None
    e = cache.get_entry("odds:g1:1")
    assert e is not None and e.freshness == "stale" and e.value == b"o"
    clock.advance(timedelta(minutes=4))
    assert cache.get("player_props:2024:18") is None
    assert cache.get("teams:2024") == b"t"
    clock.advance(timedelta(days=7))
    assert cache.get("teams:2024") is None
    assert clock.now() > datetime(2027, 1, 1, tzinfo=timezone.utc)


def test_put_ttl_overrides_class(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    cache.put("teams:short", b"t", ttl=timedelta(seconds=5))
    clock.advance(5)
    assert cache.get("teams:short") is None
    cache.put("odds:long", b"o", ttl=3600)
    clock.advance(3599)
    assert cache.get("odds:long") == b"o"


def test_get_or_fetch_refetches_after_expiry(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    calls = []

    def up() -> bytes:
        calls.append(1)
        return b"v%d" % len(calls)

    assert cache.get_or_fetch("odds:g1:live", up) == b"v1"
    assert cache.get_or_fetch("odds:g1:live", up) == b"v1"
    clock.advance(60)
    assert cache.get_or_fetch("odds:g1:live", up) == b"v2"
    assert len(calls) == 2


def test_guard_accepts_fresh_signals(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    cache.put_json("llm:features:c42:2026-11-21", [0.1, 0.2])
    cache.put_json("odds:g1:1700000000", {"home": -110})
    clock.advance(10)
    fs = cache.guard(["llm:features:c42:*", "odds:g1:*"], max_age=timedelta(hours=6))
    assert len(fs) == 2
    assert fs.json("llm:features:c42:*") == [0.1, 0.2]
    assert fs["odds:g1:*"] == b'{"home":-110}'
    assert fs.entry("odds:g1:*").key == "odds:g1:1700000000"
    assert fs.at == datetime.fromtimestamp(1_800_000_010, tz=timezone.utc)
    assert cache.guard("odds:g1:1700000000").signals[0].requirement == "odds:g1:1700000000"


def test_guard_lists_every_bad_signal(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    cache.put("llm:features:c42:2026-11-21", b"f")  # 24 h: fresh but older than max_age below
    cache.put("odds:g1:1", b"o")                     # 60 s: will expire
    cache.put("news:reuters:1", b"n")                # 1 h: fresh and young enough
    clock.advance(timedelta(minutes=30))
    cache.put("news:reuters:2", b"n2")
    with pytest.raises(freshcache.StaleSignals) as exc:
        cache.guard(
            ["llm:features:c42:*", "odds:g1:1", "news:reuters:*", "injuries:2024:18", "teams:*"],
            max_age=timedelta(minutes=20),
        )
    err = exc.value
    assert isinstance(err, freshcache.Error) and err.exit_code == 3
    by_req = {s.requirement: s for s in err.signals}
    assert set(by_req) == {"llm:features:c42:*", "odds:g1:1", "injuries:2024:18", "teams:*"}
    f = by_req["llm:features:c42:*"]
    assert (f.reason, f.key, f.cls) == ("too_old", "llm:features:c42:2026-11-21", "llm_features")
    assert f.age == timedelta(minutes=30) and f.limit == timedelta(minutes=20) and f.over_by == timedelta(minutes=10)
    o = by_req["odds:g1:1"]
    assert o.reason == "expired" and o.limit_ms == 60_000 and o.age_ms == 1_800_000
    assert by_req["injuries:2024:18"].reason == "missing" and by_req["injuries:2024:18"].age is None
    assert by_req["teams:*"].reason == "missing" and by_req["teams:*"].key is None
    assert "odds:g1:1 expired" in str(err) and "injuries:2024:18 missing" in str(err)
    # The refusal is counted as TTL violations.
    cache.flush()
    assert cache.stats()["ttl_violations"] >= 4


def test_guard_class_max_age_and_at(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    cache.put("news:ap:1", b"n")
    clock.advance(600)
    with pytest.raises(freshcache.StaleSignals) as e:
        cache.guard(["news:ap:1"], class_max_age={"news": 300})
    assert e.value.signals[0].reason == "too_old"
    assert len(cache.guard(["news:ap:1"], class_max_age={"odds": 1})) == 1
    with pytest.raises(freshcache.StaleSignals) as e:
        cache.guard(["news:ap:1"], at=1_800_000_000 - 1)
    assert e.value.signals[0].reason == "from_the_future"


def test_manual_clock_api() -> None:
    c = freshcache.ManualClock(datetime(2026, 11, 21, tzinfo=timezone.utc))
    start = c.now_ms
    c.advance(timedelta(hours=1))
    assert c.now_ms - start == 3_600_000
    c.set(0)
    assert c.now_ms == 0 and "1970" in repr(c)

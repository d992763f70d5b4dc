"""Round trips and the everyday API."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

import freshcache


def test_bytes_str_and_buffers_round_trip(cache: freshcache.Cache) -> None:
    cache.put("llm:features:c42:2026-11-21", b"\x00\x01\xff" * 1000)
    assert cache.get("llm:features:c42:2026-11-21") == b"\x00\x01\xff" * 1000
    cache.put("news:reuters:a1", "héllo wörld")
    assert cache.get("news:reuters:a1") == "héllo wörld".encode()
    cache.put("news:reuters:a2", bytearray(b"ba"))
    cache.put("news:reuters:a3", memoryview(b"mv"))
    assert cache.get_many(["news:reuters:a2", "news:reuters:a3", "news:none:x"]) == [b"ba", b"mv", None]
    assert cache.get("odds:nothing:here") is None


def test_large_value_round_trip(cache: freshcache.Cache) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, stored as a blob file
    cache.put("llm:features:big:1", big)
    assert cache.get("llm:features:big:1") == big
    assert cache.verify()["problems"] == []


def test_json_round_trip(cache: freshcache.Cache) -> None:
    props = [{"player": "Jalen Hurts", "line": 1.5, "ok": True, "none": None}]
    cache.put_json("player_props:2024:18", props)
    assert cache.get_json("player_props:2024:18") == props
    assert cache.get("player_props:2024:18") == json.dumps(props, separators=(",", ":")).encode()
    assert cache.get_json("player_props:2024:19", default=[]) == []
    assert cache.get_many_json(["player_props:2024:18", "x:y"]) == [props, None]
    cache.put("odds:g1:1", b"not json")
    with pytest.raises(freshcache.JsonError) as e:
        cache.get_json("odds:g1:1")
    assert isinstance(e.value, ValueError) and e.value.key == "odds:g1:1"


def test_entry_metadata(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    cache.put("odds:g7:1700000000", b'{"home":-110}', etag='"v1"', last_modified="Wed, 21 Oct 2026 07:28:00 GMT")
    clock.advance(20)
    e = cache.get_entry("odds:g7:1700000000")
    assert e is not None
    assert (e.key, e.cls, e.value, e.freshness, e.fresh) == ("odds:g7:1700000000", "odds", b'{"home":-110}', "fresh", True)
    assert e.etag == '"v1"' and e.last_modified.startswith("Wed")
    assert e.age == timedelta(seconds=20) and e.ttl == timedelta(seconds=60)
    assert e.expires_at.timestamp() == 1_800_000_060
    assert e.created_at.tzinfo is not None
    assert len(e.hash) == 64 and e.size == 13
    assert e.json() == {"home": -110}
    assert cache.get_entry("odds:none:1") is None
    s = cache.stat("odds:g7:1700000000")
    assert s is not None and s.value is None and s.cls == "odds"


def test_class_by_prefix_explicit_class_and_ttl(cache: freshcache.Cache) -> None:
    cache.put("teams:2024", b"[]")
    cache.put("whatever:key", b"1")
    cache.put("whatever:odds", b"1", cls="odds")
    cache.put("whatever:ttl", b"1", ttl=90)
    cache.put("whatever:td", b"1", ttl=timedelta(minutes=2))
    cache.put("whatever:float", b"1", ttl=1.5)
    ttl = {e.key: (e.cls, e.expires_at_ms - e.created_at_ms) for e in cache.list()}
    assert ttl["teams:2024"] == ("teams", 7 * 86400_000)
    assert ttl["whatever:key"] == ("default", 3600_000)
    assert ttl["whatever:odds"] == ("odds", 60_000)
    assert ttl["whatever:ttl"][1] == 90_000
    assert ttl["whatever:td"][1] == 120_000
    assert ttl["whatever:float"][1] == 1500


def test_delete_invalidate_list(cache: freshcache.Cache) -> None:
    for k in ["odds:g1:2026-11-21", "odds:g2:2026-11-21", "odds:g2:2026-11-22", "news:reuters:1"]:
        cache.put(k, b"x")
    assert [e.key for e in cache.list("odds:*:2026-11-21")] == ["odds:g1:2026-11-21", "odds:g2:2026-11-21"]
    assert len(cache.list()) == 4
    assert cache.delete("news:reuters:1") is True
    assert cache.delete("news:reuters:1") is False
    assert cache.invalidate("odds:*:2026-11-21") == 2
    assert [e.key for e in cache.list("odds:*")] == ["odds:g2:2026-11-22"]
    assert cache.invalidate("nothing:*") == 0


def test_stats_evict_gc_verify(cache: freshcache.Cache) -> None:
    cache.put("odds:g1:1", b"x" * 100)
    cache.get("odds:g1:1")
    cache.get("odds:g1:2")
    cache.flush()
    s = cache.stats()
    assert s["entries"] == 1 and s["hits"] >= 1 and s["misses"] >= 1
    assert "odds" in s["by_class"] and 0 <= s["hit_rate"] <= 1
    r = cache.evict(max_size="1KiB")
    assert {"entries_removed", "bytes_before", "bytes_after"} <= set(r)
    assert cache.evict(10 << 30)["entries_removed"] == 0
    g = cache.gc(grace=timedelta(0))
    assert g["orphan_files_removed"] == 0
    v = cache.verify(repair=False)
    assert v["problems"] == [] and v["repaired"] is False


def test_dedup_and_same_content(cache: freshcache.Cache) -> None:
    cache.put("news:a:1", b"same")
    cache.put("news:b:1", b"same")
    a, b = cache.get_entry("news:a:1"), cache.get_entry("news:b:1")
    assert a is not None and b is not None and a.hash == b.hash


def test_context_manager_and_repr(root, clock) -> None:
    with freshcache.Cache(root, clock=clock) as c:
        c.put("odds:g:1", b"1")
        assert "Cache(root=" in repr(c)
    assert c.get("odds:g:1") == b"1"

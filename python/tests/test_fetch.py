"""The conditional-GET fetcher and feeds, against a local origin."""

from __future__ import annotations

import asyncio

import pytest

import freshcache
from conftest import FAST_FETCH


@pytest.fixture
def fcache(root, clock) -> freshcache.Cache:
    return freshcache.Cache(root, config=FAST_FETCH, clock=clock)


def test_fetch_then_fresh_then_revalidated(fcache: freshcache.Cache, origin, clock) -> None:
    url = origin.url + "/etag/odds"
    r = fcache.fetch(url, "odds:g1:live")
    assert (r.outcome, r.status, r.body, r.stored, r.shared) == ("fetched", 200, b'{"v":1}', True, False)
    assert r.json() == {"v": 1} and r.requests == 1 and r.expires_at is not None
    r = fcache.fetch(url, "odds:g1:live")
    assert r.outcome == "fresh" and r.status is None and origin.count("/etag") == 1
    clock.advance(61)
    r = fcache.fetch(url, "odds:g1:live")
    assert (r.outcome, r.status, r.body_bytes, r.body) == ("revalidated", 304, 0, b'{"v":1}')
    assert fcache.get_entry("odds:g1:live").etag is not None
    origin.bodies["/etag/odds"] = b'{"v":2}'
    r = fcache.fetch(url, "odds:g1:live", revalidate=True)
    assert r.outcome == "fetched" and fcache.get_json("odds:g1:live") == {"v": 2}


def test_afetch_and_single_flight(fcache: freshcache.Cache, origin) -> None:
    async def main():
        return await asyncio.gather(*(fcache.afetch(origin.url + "/slow?s=0.3", "odds:slow:1") for _ in range(10)))

    rs = asyncio.run(main())
    assert all(r.body == b'{"slow":true}' for r in rs)
    assert origin.count("/slow") == 1 and sum(r.shared for r in rs) >= 1


def test_upstream_errors_and_stale_if_error(fcache: freshcache.Cache, origin, clock) -> None:
    with pytest.raises(freshcache.Upstream) as e:
        fcache.fetch("http://127.0.0.1:9/nothing", "odds:dead:1")
    assert e.value.exit_code == 5 and "127.0.0.1:9" in e.value.url
    with pytest.raises(freshcache.Upstream):
        fcache.fetch("ftp://example.test/x", "odds:dead:2")
    with pytest.raises(freshcache.InvalidKey):
        fcache.fetch(origin.url + "/json/1", "bad::key")
    fcache.fetch(origin.url + "/json/1", "odds:g2:live")
    clock.advance(120)
    with pytest.raises(freshcache.Upstream):
        fcache.fetch(origin.url + "/status/503", "odds:g2:live")
    # a copy that did not come from this URL is never served for it
    fcache.put("odds:g3:live", b"old")
    clock.advance(120)
    with pytest.raises(freshcache.Upstream):
        fcache.fetch(origin.url + "/status/503", "odds:g3:live", stale_if_error=True)
    # the stale copy of the same URL is returned only when asked for
    fcache.fetch(origin.url + "/json/7", "odds:g4:live")
    clock.advance(120)
    origin.failing.add("/json/7")
    with pytest.raises(freshcache.Upstream):
        fcache.fetch(origin.url + "/json/7", "odds:g4:live")
    r = fcache.fetch(origin.url + "/json/7", "odds:g4:live", stale_if_error=True)
    assert (r.outcome, r.fresh, r.body) == ("stale_if_error", False, b'{"n":7}') and r.error


def test_refresh_feeds(root, origin, clock) -> None:
    conf = dict(FAST_FETCH, feeds=[{"name": "wire", "url": origin.url + "/feed.xml", "every": "5m"}])
    c = freshcache.Cache(root, config=conf, clock=clock)
    (rep,) = c.refresh_feeds()
    assert rep["name"] == "wire" and rep["outcome"] == "fetched" and rep["articles"] == 2
    assert sorted(e.key for e in c.list("news:wire:*")) == ["news:wire:a-1", "news:wire:a-2"]
    assert c.get_json("news:wire:a-1")["title"] == "First"
    (rep,) = asyncio.run(c.arefresh_feeds())
    assert rep["error"] is None
    (bad,) = freshcache.Cache(root, config=dict(FAST_FETCH, feeds=[{"name": "gone", "url": "http://127.0.0.1:9/x", "every": "5m"}])).refresh_feeds()
    assert bad["error"] and bad["outcome"] is None


def test_quota(fcache: freshcache.Cache, origin) -> None:
    fcache.fetch(origin.url + "/json/2", "odds:q:1")
    used, limit = fcache.quota()
    assert used >= 1 and limit == 10000

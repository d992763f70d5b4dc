"""The @cache.cached decorator on sync and async functions."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import freshcache


def test_sync_decorator(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    calls = []

    @cache.cached("player_props:{season}:{week}:{include_alternate}", cls="player_props")
    def player_props(season: int, week: int, include_alternate: bool = False) -> list:
        calls.append((season, week))
        return [{"season": season, "week": week}]

    assert player_props(2024, 18) == [{"season": 2024, "week": 18}]
    assert player_props(2024, week=18) == [{"season": 2024, "week": 18}]
    assert player_props(2024, 17) == [{"season": 2024, "week": 17}]
    assert calls == [(2024, 18), (2024, 17)]
    assert player_props.key(2024, 18) == "player_props:2024:18:False"
    assert player_props.__name__ == "player_props"
    e = cache.get_entry("player_props:2024:18:False")
    assert e is not None and e.cls == "player_props" and e.ttl == timedelta(minutes=5)
    clock.advance(timedelta(minutes=5))
    player_props(2024, 18)
    assert len(calls) == 3
    assert player_props.invalidate(2024, 18) is True
    player_props(2024, 18)
    assert len(calls) == 4


def test_async_decorator_and_ttl(cache: freshcache.Cache, clock: freshcache.ManualClock) -> None:
    calls = []

    @cache.cached("injuries:{season}:{week}", ttl=30)
    async def injuries(season: int, week: int) -> dict:
        calls.append(1)
        await asyncio.sleep(0.05)
        return {"out": ["WR1"], "week": week}

    async def main() -> None:
        rs = await asyncio.gather(*(injuries(2024, 18) for _ in range(20)))
        assert rs == [{"out": ["WR1"], "week": 18}] * 20
        assert await injuries(2024, 18) == {"out": ["WR1"], "week": 18}

    asyncio.run(main())
    assert len(calls) == 1
    clock.advance(30)
    asyncio.run(main())
    assert len(calls) == 2
    assert asyncio.iscoroutinefunction(injuries)


def test_decorator_errors_are_not_cached_and_bad_keys_raise(cache: freshcache.Cache) -> None:
    n = [0]

    @cache.cached("odds:{game}:live")
    def odds(game: str) -> dict:
        n[0] += 1
        if n[0] == 1:
            raise RuntimeError("503")
        return {"game": game}

    with pytest.raises(RuntimeError):
        odds("g1")
    assert odds("g1") == {"game": "g1"}
    with pytest.raises(freshcache.InvalidKey):
        odds("")  # empty segment


def test_decorator_on_a_method(cache: freshcache.Cache) -> None:
    class Client:
        calls = 0

        @cache.cached("teams:{season}")
        def teams(self, season: int) -> list:
            Client.calls += 1
            return ["PHI", "DAL"]

    a, b = Client(), Client()
    assert a.teams(2024) == b.teams(2024) == ["PHI", "DAL"]
    assert Client.calls == 1

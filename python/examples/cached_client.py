#!/usr/bin/env python3
"""The seeds' CachedSportsDataIOClient, on freshcache.

The seeds wrap every endpoint of an async SportsDataIO client by hand:
build a key, try the cache, else call the API, write through, per-type TTL
(CacheDataType), bulk invalidation by week, hit/miss statistics. With
freshcache each endpoint is one decorator line; TTLs come from the classes
in runtime.yml (teams 7d, player_props 5m, injuries 15m, odds 60s, ...);
concurrent requests for one key make one upstream call; the data sits in
a cache root the CLI and the daemon share.

Runs against a local origin (http.server in a thread) standing in for the
API, so it needs no key and no network:

    pip install ./python
    python python/examples/cached_client.py
"""

from __future__ import annotations

import asyncio
import http.server
import json
import tempfile
import threading
import urllib.request
from datetime import timedelta
from typing import Any, Dict, List

import freshcache

# ---------------------------------------------------------------- the origin


class FakeSportsDataIO(http.server.BaseHTTPRequestHandler):
    """/v3/nfl/{kind}/{season}/{week}: a few canned JSON documents."""

    calls: List[str] = []
    lock = threading.Lock()

    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        with self.lock:
            self.calls.append(self.path)
        parts = self.path.strip("/").split("/")  # v3 nfl kind args...
        kind, args = parts[2], parts[3:]
        body: Any
        if kind == "teams":
            body = [{"Key": "PHI", "Name": "Eagles"}, {"Key": "DAL", "Name": "Cowboys"}]
        elif kind == "playerprops":
            body = [{"PlayerID": 1, "Name": "Jalen Hurts", "Market": "passing_yards", "Line": 224.5, "Week": int(args[1])}]
        elif kind == "injuries":
            body = [{"PlayerID": 7, "Status": "Questionable", "Week": int(args[1])}]
        elif kind == "odds":
            body = [{"GameKey": f"{args[0]}{args[1]}01", "HomeMoneyLine": -110, "AwayMoneyLine": 100}]
        else:
            self.send_response(404)
            self.end_headers()
            return
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def start_origin() -> str:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeSportsDataIO)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/v3/nfl"


# ---------------------------------------------------------------- the client


class SportsDataIOClient:
    """The raw async API client (the seeds' SportsDataIOClient)."""

    def __init__(self, base: str) -> None:
        self.base = base

    async def _get(self, path: str) -> Any:
        def call() -> Any:
            with urllib.request.urlopen(f"{self.base}/{path}", timeout=10) as r:
                return json.load(r)

        await asyncio.sleep(0.05)  # the API's latency
        return await asyncio.get_running_loop().run_in_executor(None, call)


def cached_client(cache: freshcache.Cache, base: str):
    """The seeds' CachedSportsDataIOClient: one decorator per endpoint."""
    api = SportsDataIOClient(base)

    class CachedSportsDataIOClient:
        @cache.cached("teams:{season}")                                   # 7 d
        async def get_teams(self, season: int) -> List[Dict[str, Any]]:
            return await api._get(f"teams/{season}")

        @cache.cached("player_props:{season}:{week}:{include_alternate}")  # 5 min
        async def get_player_props_by_week(self, season: int, week: int, include_alternate: bool = False) -> List[Dict[str, Any]]:
            return await api._get(f"playerprops/{season}/{week}")

        @cache.cached("injuries:{season}:{week}:all")                     # 15 min
        async def get_injuries_by_week(self, season: int, week: int) -> List[Dict[str, Any]]:
            return await api._get(f"injuries/{season}/{week}")

        @cache.cached("odds:{season}:{week}:pregame")                     # 60 s
        async def get_pregame_odds_by_week(self, season: int, week: int) -> List[Dict[str, Any]]:
            return await api._get(f"odds/{season}/{week}")

        async def invalidate_week_data(self, season: int, week: int) -> int:
            """The seeds' bulk invalidation: every type's data for one week."""
            patterns = [f"{t}:{season}:{week}:*" for t in ("player_props", "injuries", "odds", "box_scores", "player_game_stats")]
            return sum(cache.invalidate(p) for p in patterns)

        def get_cache_stats(self) -> Dict[str, Any]:
            cache.flush()
            s = cache.stats()
            return {
                "overall": {"hit_rate": round(s["hit_rate"], 3), "hits": s["hits"], "misses": s["misses"],
                            "api_calls_avoided": s["upstream_calls_avoided"]},
                "by_type": {c: {"hits": sum(v["hits"].values()), "misses": v["misses"]} for c, v in s["by_class"].items()},
            }

    return CachedSportsDataIOClient()


async def main() -> None:
    base = start_origin()
    root = tempfile.mkdtemp(prefix="freshcache-example-")
    clock = freshcache.ManualClock()  # so the example can show expiry without sleeping
    cache = freshcache.Cache(root, clock=clock)
    client = cached_client(cache, base)

    # 1. Cold: 50 concurrent requests for week 18's props -> one API call.
    props = await asyncio.gather(*(client.get_player_props_by_week(2024, 18) for _ in range(50)))
    print(f"50 concurrent get_player_props_by_week(2024, 18): {len(FakeSportsDataIO.calls)} API call(s)")
    assert len(FakeSportsDataIO.calls) == 1 and all(p == props[0] for p in props)

    # 2. Warm: every other endpoint once, then all of them again from the cache.
    for _ in range(2):
        await client.get_teams(2024)
        await client.get_injuries_by_week(2024, 18)
        await client.get_pregame_odds_by_week(2024, 18)
    print(f"after two rounds of teams/injuries/odds: {len(FakeSportsDataIO.calls)} API calls")

    # 3. Per-type TTLs: 2 minutes later odds (60 s) are stale, props (5 min) are not.
    clock.advance(timedelta(minutes=2))
    await client.get_pregame_odds_by_week(2024, 18)
    await client.get_player_props_by_week(2024, 18)
    print(f"2 min later: odds refetched, props still cached -> {len(FakeSportsDataIO.calls)} API calls")

    # 4. The staleness guard before an inference run.
    try:
        cache.guard(["player_props:2024:18:*", "odds:2024:18:*", "injuries:2024:18:*"], max_age=timedelta(minutes=1))
    except freshcache.StaleSignals as e:
        for s in e.signals:
            print(f"guard refused {s.key}: {s.reason} (age {s.age}, limit {s.limit})")

    # 5. Week invalidation (a schedule change), then the next call goes upstream.
    n = await client.invalidate_week_data(2024, 18)
    await client.get_player_props_by_week(2024, 18)
    print(f"invalidate_week_data(2024, 18) removed {n} entries; props refetched -> {len(FakeSportsDataIO.calls)} API calls")

    stats = client.get_cache_stats()
    print("stats:", json.dumps(stats["overall"]))
    print(f"same root from the CLI: freshcache --root {root} ls")


if __name__ == "__main__":
    asyncio.run(main())

"""Single-flight across threads and asyncio tasks; the GIL is released."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import freshcache


def test_200_threads_and_50_tasks_make_one_upstream_call(cache: freshcache.Cache) -> None:
    calls = []
    lock = threading.Lock()
    key = "llm:features:c42:2026-11-21"
    start = threading.Barrier(201)

    def upstream_sync() -> bytes:
        with lock:
            calls.append("thread")
        time.sleep(0.5)
        return b"features"

    async def upstream_async() -> bytes:
        with lock:
            calls.append("task")
        await asyncio.sleep(0.5)
        return b"features"

    results = []

    def worker() -> None:
        start.wait()
        results.append(cache.get_or_fetch(key, upstream_sync))

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()

    async def tasks() -> list:
        return await asyncio.gather(*(cache.aget_or_fetch(key, upstream_async) for _ in range(50)))

    def loop_thread() -> None:
        start.wait()
        results.extend(asyncio.run(tasks()))

    lt = threading.Thread(target=loop_thread)
    lt.start()
    for t in threads:
        t.join()
    lt.join()
    assert len(calls) == 1, calls
    assert results == [b"features"] * 250
    cache.flush()
    assert cache.stats()["upstream_calls_avoided"] >= 1


def test_followers_get_the_leaders_exception(cache: freshcache.Cache) -> None:
    calls = []

    def fail() -> bytes:
        calls.append(1)
        time.sleep(0.3)
        raise ConnectionError("api down")

    errors = []

    def worker() -> None:
        try:
            cache.get_or_fetch("odds:g1:live", fail)
        except ConnectionError as e:
            errors.append(str(e))

    ts = [threading.Thread(target=worker) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(errors) == 20 and set(errors) == {"api down"}
    assert len(calls) < 20  # shared flights (usually exactly 1)


def test_threads_run_in_parallel_while_one_waits_on_the_network(cache: freshcache.Cache, origin) -> None:
    # The fetch timeout outlasts the origin's hold (60 s), so the fetch
    # always completes; only the events decide when.
    c = freshcache.Cache(cache.root, config={"fetch": {"rate_limit": "1000/s", "timeout": "120s"}})
    c.put("odds:g1:1", b"x")
    # The origin holds the response until the reader has made 50 gets and
    # the spinner has run 1,000 iterations: both happen only if the fetch
    # waits on the network without the GIL (else the hold times out after
    # 60 s and the counts below fall short).
    reader_ready, spinner_ready = threading.Event(), threading.Event()
    origin.hold.extend([reader_ready, spinner_ready])
    done = threading.Event()
    failed: list = []

    def slow_fetch() -> None:
        try:
            c.fetch(origin.url + "/hold", "odds:slow:1")
        except Exception as e:  # pragma: no cover - reported below
            failed.append(e)
        finally:
            done.set()

    t = threading.Thread(target=slow_fetch)
    t.start()
    # The request has reached the origin: the fetch is now waiting on it.
    deadline = time.monotonic() + 60
    while origin.count("/hold") == 0 and not done.is_set():
        assert time.monotonic() < deadline, "the fetch never reached the origin"
        time.sleep(0.01)
    counts = [0, 0]

    def reader() -> None:
        while not done.is_set():
            assert c.get("odds:g1:1") == b"x"
            counts[0] += 1
            if counts[0] == 50:
                reader_ready.set()

    def spinner() -> None:
        while not done.is_set():
            counts[1] += 1
            if counts[1] == 1000:
                spinner_ready.set()

    others = [threading.Thread(target=reader), threading.Thread(target=spinner)]
    for o in others:
        o.start()
    t.join()
    for o in others:
        o.join()
    assert failed == []
    # Event-based, not a rate: while the fetch waited, other threads used
    # the cache and pure-Python code ran.
    assert reader_ready.is_set() and spinner_ready.is_set(), counts
    assert counts[0] >= 50 and counts[1] >= 1000, counts
    assert c.get("odds:slow:1") == b'{"slow":true}'


def test_get_or_fetch_releases_the_gil_while_waiting(cache: freshcache.Cache) -> None:
    # A follower waits on the leader without holding the GIL: a third
    # thread keeps running Python code, and is the one that lets the
    # leader finish (were the GIL held by the waiting follower, this thread
    # could not run to set the gate).
    gate = threading.Event()
    opened = []

    def upstream() -> bytes:
        opened.append(gate.wait(60))
        return b"v"

    t1 = threading.Thread(target=lambda: cache.get_or_fetch("odds:g:slow", upstream))
    t2 = threading.Thread(target=lambda: cache.get_or_fetch("odds:g:slow", upstream))
    t1.start()
    t2.start()
    # Give the follower time to start waiting (not a rate: only progress
    # is asserted).
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.2:
        n += 1
    gate.set()
    t1.join()
    t2.join()
    assert opened and all(opened), "the upstream call timed out waiting for this thread"
    assert n > 0 and cache.get("odds:g:slow") == b"v"


def test_nested_get_or_fetch_inside_a_loader(cache: freshcache.Cache) -> None:
    def outer() -> bytes:
        inner = cache.get_or_fetch("llm:features:inner:1", lambda: b"in")
        return inner + b"+out"

    assert cache.get_or_fetch("llm:features:outer:1", outer) == b"in+out"


def test_asyncio_tasks_share_one_call_and_cancellation_does_not_break_it(cache: freshcache.Cache) -> None:
    calls = []

    async def up() -> str:
        calls.append(1)
        await asyncio.sleep(0.2)
        return "v"

    async def main() -> None:
        first = asyncio.ensure_future(cache.aget_or_fetch("news:ap:1", up))
        await asyncio.sleep(0.05)
        first.cancel()
        rest = await asyncio.gather(*(cache.aget_or_fetch("news:ap:1", up) for _ in range(10)))
        assert rest == [b"v"] * 10
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(main())
    assert len(calls) == 1


def test_one_cache_shared_by_many_threads(cache: freshcache.Cache) -> None:
    errors = []

    def worker(w: int) -> None:
        try:
            for i in range(150):
                k = f"odds:w{w}:{i % 20}"
                cache.put_json(k, {"w": w, "i": i})
                v = cache.get_json(k)
                assert v is not None and v["w"] == w
                if i % 25 == 0:
                    cache.invalidate(f"odds:w{w}:*")
                    cache.list("odds:*")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert cache.verify()["problems"] == []

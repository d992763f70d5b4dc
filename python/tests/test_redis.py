"""With a shared Redis tier, two instances (two roots) act as one cache:
a put on one is a hit on the other, and concurrent misses across both make
one upstream call (the core's leases). Skipped without redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import freshcache


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        p.terminate()
        p.wait(10)


def test_two_instances_share_puts_and_one_upstream_call(tmp_path: Path, redis_url: str) -> None:
    conf = {"redis": {"url": redis_url, "timeout": "2s"}}
    a = freshcache.Cache(tmp_path / "a", config=conf)
    b = freshcache.Cache(tmp_path / "b", config=conf)
    a.put_json("odds:g1:1700000000", {"home": -110})
    assert b.get_json("odds:g1:1700000000") == {"home": -110}

    calls = []
    lock = threading.Lock()

    def upstream() -> bytes:
        with lock:
            calls.append(1)
        time.sleep(0.5)
        return b"features"

    start = threading.Barrier(40)
    out = []

    def worker(c: freshcache.Cache) -> None:
        start.wait()
        out.append(c.get_or_fetch("llm:features:c9:2026-11-21", upstream))

    ts = [threading.Thread(target=worker, args=(c,)) for c in [a, b] * 20]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == [b"features"] * 40
    assert len(calls) == 1, calls

    # An invalidation on one instance reaches the other.
    assert a.invalidate("odds:*") == 1
    deadline = time.monotonic() + 30  # guards a hang only
    while b.get("odds:g1:1700000000") is not None:
        assert time.monotonic() < deadline, "invalidation did not reach instance b"
        time.sleep(0.05)
    assert b.stats()["redis"]["configured"] is True


def test_guard_lists_unconfirmed_signals_when_redis_is_unreachable(tmp_path: Path) -> None:
    """Redis configured but down at open: under `available` the guard accepts
    local entries and names them unconfirmed; under `strict` it refuses them."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"redis://127.0.0.1:{port}/0"
    c = freshcache.Cache(tmp_path / "a", config={"redis": {"url": url, "timeout": "200ms"}})
    c.put("odds:g1:1", b"x")
    fs = c.guard(["odds:g1:1"])
    assert fs["odds:g1:1"] == b"x"
    assert fs.unconfirmed == ["odds:g1:1"]
    del c
    strict = freshcache.Cache(
        tmp_path / "a", config={"redis": {"url": url, "timeout": "200ms", "consistency": "strict"}}
    )
    with pytest.raises(freshcache.StaleSignals) as e:
        strict.guard(["odds:g1:1"])
    assert [(s.key, s.reason) for s in e.value.signals] == [("odds:g1:1", "unconfirmed")]

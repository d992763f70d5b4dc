"""A Cache used after fork reopens the root in the child."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sys
import threading
import time

import pytest

import freshcache

# Python 3.12+ warns on every fork of a process with threads; forking one
# (the runtime's workers, test servers) is exactly what these tests cover.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


def test_os_fork_child_reopens(root) -> None:
    c = freshcache.Cache(root)
    c.put("odds:g1:1", b"parent")
    assert c.get("odds:g1:1") == b"parent"  # parent's handles and L1 are warm
    # A value large enough to be hashed on the rayon pool (8 MiB and more,
    # digest.rs): the parent's pool threads do not exist in the child,
    # which must not wait for them.
    big = os.urandom(8 << 20)
    c.put("odds:g1:big", big)
    gen = c._generation
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            ok = c.get("odds:g1:1") == b"parent" and c._generation == gen + 1
            c.put("odds:g1:2", b"child")
            c.put("odds:g1:big2", big[::-1])
            ok = ok and c.get("odds:g1:big2") == big[::-1]
            v = c.get_or_fetch("odds:g1:3", lambda: b"child-fetch")
            c.flush()
            code = 0 if ok and v == b"child-fetch" else 2
        finally:
            os.write(w, b"%d" % code)
            os._exit(code)
    os.close(w)
    status = _wait(pid)
    assert os.read(r, 10) == b"0" and os.waitstatus_to_exitcode(status) == 0
    assert c._generation == gen
    assert c.get("odds:g1:2") == b"child"
    assert c.get("odds:g1:3") == b"child-fetch"
    assert c.get("odds:g1:big2") == big[::-1]


@pytest.mark.skipif(sys.platform != "linux", reason="fork + threads")
def test_threads_reopen_together_after_fork(root) -> None:
    """The first calls of a gthread worker: 8 threads reopen at once."""
    c = freshcache.Cache(root)
    c.put("odds:g2:1", b"parent")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            got: list[bytes | None] = []
            barrier = threading.Barrier(8)

            def hit() -> None:
                barrier.wait()
                got.append(c.get("odds:g2:1"))

            ts = [threading.Thread(target=hit) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            code = 0 if got == [b"parent"] * 8 else 2
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(_wait(pid)) == 0


def _wait(pid: int) -> int:
    """The child's wait status; a child that hangs (a deadlock) is killed
    after 60 s and fails the test instead of hanging the suite."""
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung (deadlock)")
        time.sleep(0.05)


def _worker(args) -> int:
    cache, i = args
    for j in range(50):
        cache.put_json(f"player_props:2024:{i}:{j}", {"i": i, "j": j})
    return sum(1 for j in range(50) if cache.get_json(f"player_props:2024:{i}:{j}") == {"i": i, "j": j})


def test_multiprocessing_fork_pool(root) -> None:
    c = freshcache.Cache(root)
    c.put("odds:g:0", b"warm")
    with mp.get_context("fork").Pool(4) as pool:
        assert pool.map(_worker, [(c, i) for i in range(4)]) == [50] * 4
    assert len(c.list("player_props:*")) == 200
    assert c.verify()["problems"] == []


def test_multiprocessing_spawn_pickles_the_root(root) -> None:
    c = freshcache.Cache(root)
    again = pickle.loads(pickle.dumps(c))
    assert again.root == c.root
    with mp.get_context("spawn").Pool(2) as pool:
        assert pool.map(_worker, [(c, i) for i in range(2)]) == [50] * 2
    assert len(c.list("player_props:*")) == 100


@pytest.mark.skipif(sys.platform != "linux", reason="fork + threads")
def test_fork_after_async_use(root) -> None:
    import asyncio

    c = freshcache.Cache(root)

    async def up() -> bytes:
        return b"a"

    assert asyncio.run(c.aget_or_fetch("news:x:1", up)) == b"a"
    pid = os.fork()
    if pid == 0:
        try:
            v = asyncio.run(c.aget_or_fetch("news:x:2", up))
            os._exit(0 if v == b"a" else 3)
        except BaseException:
            os._exit(4)
    status = _wait(pid)
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.get("news:x:2") == b"a"


def test_pickling_keeps_a_mapping_config(root) -> None:
    """A Cache built from a mapping comes back with that mapping, not the
    defaults (a class TTL of 7 s instead of odds' default)."""
    conf = {"classes": {"odds": {"prefix": "odds:", "ttl": "7s"}}}
    c = freshcache.Cache(root, config=conf)
    again = pickle.loads(pickle.dumps(c))
    again.put("odds:p:1", b"v")
    e = again.get_entry("odds:p:1")
    assert e is not None and e.ttl.total_seconds() == 7

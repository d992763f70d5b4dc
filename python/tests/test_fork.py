"""A Cache used after fork reopens the root in the child."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sys

import pytest

import freshcache

# Python 3.12+ warns on every fork of a process with threads; forking one
# (the runtime's workers, test servers) is exactly what these tests cover.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


def test_os_fork_child_reopens(root) -> None:
    c = freshcache.Cache(root)
    c.put("odds:g1:1", b"parent")
    assert c.get("odds:g1:1") == b"parent"  # parent's handles and L1 are warm
    gen = c._generation
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            ok = c.get("odds:g1:1") == b"parent" and c._generation == gen + 1
            c.put("odds:g1:2", b"child")
            v = c.get_or_fetch("odds:g1:3", lambda: b"child-fetch")
            c.flush()
            code = 0 if ok and v == b"child-fetch" else 2
        finally:
            os.write(w, b"%d" % code)
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 10) == b"0" and os.waitstatus_to_exitcode(status) == 0
    assert c._generation == gen
    assert c.get("odds:g1:2") == b"child"
    assert c.get("odds:g1:3") == b"child-fetch"


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
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.get("news:x:2") == b"a"

"""The extension's JSON encoder agrees with the standard library."""

from __future__ import annotations

import collections
import enum
import json
import math

import pytest

import freshcache
from freshcache import _native

STD = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class Color(enum.IntEnum):
    RED = 1


class S(str):
    pass


VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64, 10**40, -(10**30),
    0.0, -0.0, 0.1, 1.5, 1e16, 1e-7, 123456789.123, 2.5e-308, 1.7976931348623157e308,
    "", "plain", 'quo"te \\ back', "tab\t nl\n cr\r \x00 \x1f \x7f", "héllo wörld ✓ 🏈", "\u2028\u2029",
    [], {}, [1, [2, [3, []]]], (1, 2), {"a": {"b": [None, {"c": "d"}]}},
    {1: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    collections.OrderedDict([("z", 1), ("a", 2)]), Color.RED, S("sub"), [Color.RED, S("x")],
    {"odds": [{"market": f"m{j}", "home": -110 + j, "total": 44.5 + j / 10} for j in range(50)]},
]


@pytest.mark.parametrize("v", VALUES, ids=range(len(VALUES)))
def test_same_json_as_the_standard_library(v) -> None:
    ours = _native.dumps(v)
    assert json.loads(ours) == json.loads(STD(v))
    if not isinstance(v, float):  # ryu may spell a lone float differently (1e16 vs 1e+16)
        assert ours.decode() == STD(v)


def test_floats_round_trip_exactly() -> None:
    for x in [0.1, 1 / 3, 1e16, 5e-324, 1.7976931348623157e308, 123.456e7]:
        assert json.loads(_native.dumps(x)) == x
        assert json.loads(_native.dumps([x])) == [x]


def test_invalid_json_values_are_refused() -> None:
    for bad in [math.nan, math.inf, -math.inf, [1, math.nan], {"a": math.inf}]:
        with pytest.raises(ValueError):
            _native.dumps(bad)
    with pytest.raises(TypeError):
        _native.dumps({"a": object()})
    with pytest.raises(TypeError):
        _native.dumps({(1, 2): "tuple key"})
    cyc: list = []
    cyc.append(cyc)
    with pytest.raises((ValueError, RecursionError)):
        _native.dumps(cyc)


def test_deep_nesting_falls_back_not_fails() -> None:
    deep: list = []
    cur = deep
    for _ in range(400):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    assert json.loads(_native.dumps(deep)) == deep


def test_put_json_bytes_are_what_rust_reads(cache: freshcache.Cache, root, cli) -> None:
    v = {"name": "Jalen Hurts", "line": 224.5, "alt": [1e16, -0.0], "emoji": "🏈"}
    cache.put_json("player_props:2024:18:x", v)
    cache.flush()
    r = cli("--root", str(root), "get", "player_props:2024:18:x")
    assert r.returncode == 0 and json.loads(r.stdout) == v


DOCS = [
    b"null", b"true", b"false", b"0", b"-0", b"-0.0", b"1", b"-1", b"9223372036854775807", b"9223372036854775808",
    b"-9223372036854775809", b"123456789012345678901234567890", b"1.5", b"1e16", b"1E+2", b"1e-7", b"2.5e-308",
    b"5e-324", b"1e400", b"-1e400", b"0.1", b"0.30000000000000004", b"123.456e7", b"17976931348623157e292",
    b'""', b'"plain"', b'"quo\\"te \\\\ back \\/"', b'"\\b\\f\\n\\r\\t"', b'"\\u00e9\\u2028\\ud83c\\udfc8"',
    '"héllo wörld ✓ 🏈"'.encode(), b"[]", b"{}", b" [ 1 , [ 2 , [ ] ] ] ", b'{"a":1,"a":2,"b":3}',
    b'{"a": {"b": [null, {"c": "d"}]}, "e": [true, false]}',
    # left to the standard library: it decides or raises
    b"NaN", b"[Infinity,-Infinity]", b'"\\ud800"', b'"\\udc00x"', b"[1,]", b"{\"a\" 1}", b"01", b"1.", b".5",
    b"[1] x", b'"tab\there"', b"\xff", b"", b"  ", b'"unterminated', b"-", b"1e", b"tru", b'{"a":1', b"[" * 600 + b"]" * 600,
]


@pytest.mark.parametrize("doc", DOCS, ids=range(len(DOCS)))
def test_loads_matches_the_standard_library(doc: bytes) -> None:
    try:
        want = json.loads(doc)
    except (ValueError, RecursionError) as e:
        with pytest.raises(type(e)):
            _native.loads(doc)
        return
    got = _native.loads(doc)
    assert repr(got) == repr(want)  # same types, same float bits, same key order


def test_loads_random_documents_match() -> None:
    import random

    rnd = random.Random(13)

    def gen(depth: int):
        k = rnd.randrange(9 if depth < 5 else 6)
        if k == 0:
            return None
        if k == 1:
            return rnd.random() < 0.5
        if k == 2:
            return rnd.randrange(-(2**70), 2**70)
        if k == 3:
            return rnd.uniform(-1e6, 1e6) * 10 ** rnd.randrange(-300, 300)
        if k == 4:
            return "".join(chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(0xA0, 0xD7FF), rnd.randrange(0x10000, 0x10FFFF), rnd.randrange(0, 32)])) for _ in range(rnd.randrange(8)))
        if k == 5:
            return rnd.randrange(-1000, 1000)
        if k in (6, 7):
            return [gen(depth + 1) for _ in range(rnd.randrange(5))]
        return {str(gen(depth + 1)): gen(depth + 1) for _ in range(rnd.randrange(5))}

    for _ in range(400):
        v = gen(0)
        for doc in (json.dumps(v).encode(), json.dumps(v, ensure_ascii=False).encode(), json.dumps(v, indent=2).encode()):
            assert repr(_native.loads(doc)) == repr(json.loads(doc))


def test_get_json_of_invalid_json_is_a_json_error(cache: freshcache.Cache) -> None:
    cache.put("odds:g1:1", b"{broken")
    with pytest.raises(freshcache.JsonError):
        cache.get_json("odds:g1:1")

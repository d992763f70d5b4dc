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

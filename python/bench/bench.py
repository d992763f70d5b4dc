#!/usr/bin/env python3
"""freshcache vs python-diskcache vs cachetools.TTLCache, from Python, in one run.

    pip install ./python diskcache cachetools
    python python/bench/bench.py [--quick] [--out FILE]

Both disk caches get a fresh directory on the same filesystem with their
default settings (diskcache: SQLite + pickle, values over 32 KiB in files;
freshcache: SQLite + LZ4 inline, zstd files for encoded blobs over 32 KiB). cachetools
is a dict in this process: it shares nothing and survives nothing; it is
the floor for a hot get.

Per operation: p50 and p99 of single calls (perf_counter_ns), and the
ratios freshcache/diskcache and freshcache/cachetools. Goals (issue 13):
every disk operation at most 0.5x diskcache's time, hot gets within 1.5x
of cachetools.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import cachetools
import diskcache

import freshcache


def doc_4k(i: int) -> dict:
    # ~4 KiB of odds-like JSON
    return {
        "game": f"g{i}",
        "book": "pinnacle",
        "lines": [{"market": f"m{j}", "home": -110 + j, "away": 100 - j, "total": 44.5 + j / 10} for j in range(78)],
    }


def timed(fn: Callable[[int], object], n: int) -> List[int]:
    out = []
    pc = time.perf_counter_ns
    for i in range(n):
        t0 = pc()
        fn(i)
        out.append(pc() - t0)
    return out


def pct(xs: List[int], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] / 1000.0  # µs


def fmt(us: float) -> str:
    return f"{us:.1f}" if us < 100 else f"{us:.0f}"


Row = Tuple[str, Dict[str, Optional[List[int]]]]


def bench_ops(n_small: int, n_big: int, base: str) -> List[Row]:
    fc = freshcache.Cache(os.path.join(base, "fc"))
    dc = diskcache.Cache(os.path.join(base, "dc"))
    tc: cachetools.TTLCache = cachetools.TTLCache(maxsize=1 << 20, ttl=3600)
    docs = [doc_4k(i) for i in range(n_small)]
    blobs = [os.urandom(1 << 20) for _ in range(4)]
    rows: List[Row] = []

    rows.append(("put 4 KiB JSON", {
        "freshcache": timed(lambda i: fc.put_json(f"odds:g{i}:1700000000", docs[i]), n_small),
        "diskcache": timed(lambda i: dc.set(f"odds:g{i}:1700000000", docs[i]), n_small),
        "cachetools": timed(lambda i: tc.__setitem__(f"odds:g{i}:1700000000", docs[i]), n_small),
    }))
    # First reads after the puts (freshcache: L1 has the bytes; index lookup + JSON parse).
    rows.append(("get 4 KiB JSON", {
        "freshcache": timed(lambda i: fc.get_json(f"odds:g{i}:1700000000"), n_small),
        "diskcache": timed(lambda i: dc.get(f"odds:g{i}:1700000000"), n_small),
        "cachetools": timed(lambda i: tc.get(f"odds:g{i}:1700000000"), n_small),
    }))
    # A new process's view: nothing in memory (freshcache reopened, diskcache reopened).
    fc2 = freshcache.Cache(os.path.join(base, "fc"))
    dc2 = diskcache.Cache(os.path.join(base, "dc"))
    rows.append(("get 4 KiB JSON, cold process", {
        "freshcache": timed(lambda i: fc2.get_json(f"odds:g{i}:1700000000"), n_small),
        "diskcache": timed(lambda i: dc2.get(f"odds:g{i}:1700000000"), n_small),
        "cachetools": None,
    }))
    raws = [json.dumps(d, separators=(",", ":")).encode() for d in docs]
    rows.append(("put 4 KiB bytes", {
        "freshcache": timed(lambda i: fc.put(f"odds:b{i}:1700000000", raws[i]), n_small),
        "diskcache": timed(lambda i: dc.set(f"odds:b{i}:1700000000", raws[i]), n_small),
        "cachetools": timed(lambda i: tc.__setitem__(f"odds:b{i}:1700000000", raws[i]), n_small),
    }))
    fc3 = freshcache.Cache(os.path.join(base, "fc"))
    dc3 = diskcache.Cache(os.path.join(base, "dc"))
    rows.append(("get 4 KiB bytes, cold process", {
        "freshcache": timed(lambda i: fc3.get(f"odds:b{i}:1700000000"), n_small),
        "diskcache": timed(lambda i: dc3.get(f"odds:b{i}:1700000000"), n_small),
        "cachetools": None,
    }))
    rows.append(("get 4 KiB bytes, warm", {
        "freshcache": timed(lambda i: fc3.get(f"odds:b{i}:1700000000"), n_small),
        "diskcache": timed(lambda i: dc3.get(f"odds:b{i}:1700000000"), n_small),
        "cachetools": timed(lambda i: tc.get(f"odds:b{i}:1700000000"), n_small),
    }))
    dc3.close()
    rows.append(("put 1 MiB bytes", {
        "freshcache": timed(lambda i: fc.put(f"llm:features:c{i}:2026-11-21", blobs[i % 4] + i.to_bytes(4, "little")), n_big),
        "diskcache": timed(lambda i: dc.set(f"llm:features:c{i}:2026-11-21", blobs[i % 4] + i.to_bytes(4, "little")), n_big),
        "cachetools": timed(lambda i: tc.__setitem__(f"llm:features:c{i}:2026-11-21", blobs[i % 4] + i.to_bytes(4, "little")), n_big),
    }))
    rows.append(("get 1 MiB bytes, cold process", {
        "freshcache": timed(lambda i: fc2.get(f"llm:features:c{i}:2026-11-21"), n_big),
        "diskcache": timed(lambda i: dc2.get(f"llm:features:c{i}:2026-11-21"), n_big),
        "cachetools": None,
    }))
    rows.append(("get 1 MiB bytes", {
        "freshcache": timed(lambda i: fc.get(f"llm:features:c{i}:2026-11-21"), n_big),
        "diskcache": timed(lambda i: dc.get(f"llm:features:c{i}:2026-11-21"), n_big),
        "cachetools": timed(lambda i: tc.get(f"llm:features:c{i}:2026-11-21"), n_big),
    }))
    rows.append(("miss", {
        "freshcache": timed(lambda i: fc.get(f"odds:none:{i}"), n_small),
        "diskcache": timed(lambda i: dc.get(f"odds:none:{i}"), n_small),
        "cachetools": timed(lambda i: tc.get(f"odds:none:{i}"), n_small),
    }))
    small = b'{"home":-110,"away":100}'
    fc.put("odds:hot:1", small)
    dc.set("odds:hot:1", small)
    tc["odds:hot:1"] = small
    for _ in range(10):
        fc.get("odds:hot:1")
    hot_n = n_small * 10
    rows.append(("hot get (same key, 24 B bytes)", {
        "freshcache": timed(lambda i: fc.get("odds:hot:1"), hot_n),
        "diskcache": timed(lambda i: dc.get("odds:hot:1"), hot_n),
        "cachetools": timed(lambda i: tc.get("odds:hot:1"), hot_n),
    }))
    rows.append(("hot get (same key, 4 KiB JSON)", {
        "freshcache": timed(lambda i: fc.get_json("odds:g1:1700000000"), hot_n),
        "diskcache": timed(lambda i: dc.get("odds:g1:1700000000"), hot_n),
        "cachetools": timed(lambda i: tc.get("odds:g1:1700000000"), hot_n),
    }))
    dc.close()
    dc2.close()
    return rows


def _proc(args: Tuple[str, str, int, int]) -> List[int]:
    kind, root, wid, n = args
    doc = doc_4k(wid)
    if kind == "freshcache":
        c = freshcache.Cache(root)
        put = lambda k: c.put_json(k, doc)  # noqa: E731
        get = c.get_json
    else:
        d = diskcache.Cache(root)
        put = lambda k: d.set(k, doc)  # noqa: E731
        get = d.get
    lat = []
    pc = time.perf_counter_ns
    for i in range(n):
        k = f"odds:w{wid}:{i}"
        t0 = pc()
        put(k)
        t1 = pc()
        assert get(f"odds:w{wid}:{i}") is not None
        t2 = pc()
        lat += [t1 - t0, t2 - t1]
    return lat


def bench_procs(n: int, base: str) -> Row:
    out: Dict[str, Optional[List[int]]] = {"cachetools": None}
    ctx = mp.get_context("spawn")
    for kind in ("freshcache", "diskcache"):
        root = os.path.join(base, f"mp-{kind}")
        if kind == "freshcache":
            freshcache.Cache(root)
        else:
            diskcache.Cache(root).close()
        with ctx.Pool(4) as pool:
            res = pool.map(_proc, [(kind, root, w, n) for w in range(4)])
        out[kind] = [x for r in res for x in r]
    return ("4 processes, one root: put+get 4 KiB JSON", out)


def render(rows: List[Row], quick: bool) -> str:
    lines = [
        f"Python {platform.python_version()}, freshcache {freshcache.__version__}, "
        f"diskcache {diskcache.__version__}, cachetools {cachetools.__version__}, "
        f"{os.cpu_count()} CPUs{' (quick run)' if quick else ''}. Times in µs per call.",
        "",
        "| operation | freshcache p50 / p99 | diskcache p50 / p99 | cachetools p50 / p99 | fc/dc (p50) | fc/ct (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        cells, p50 = [], {}
        for k in ("freshcache", "diskcache", "cachetools"):
            xs = r.get(k)
            if xs:
                p50[k] = pct(xs, 0.5)
                cells.append(f"{fmt(p50[k])} / {fmt(pct(xs, 0.99))}")
            else:
                cells.append("n/a")
        fcdc = f"{p50['freshcache'] / p50['diskcache']:.2f}x" if "diskcache" in p50 else "n/a"
        fcct = f"{p50['freshcache'] / p50['cachetools']:.2f}x" if "cachetools" in p50 else "n/a"
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} | {fcdc} | {fcct} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    ap.add_argument("--out", help="also write the markdown table here")
    ap.add_argument("--repeat", type=int, default=1, help="run everything N times, pooling the samples")
    a = ap.parse_args()
    n_small, n_big, n_proc = (300, 20, 200) if a.quick else (3000, 100, 2000)
    base = tempfile.mkdtemp(prefix="freshcache-bench-", dir=os.environ.get("BENCH_DIR"))
    rows: List[Row] = []
    try:
        for r in range(a.repeat):
            d = os.path.join(base, f"run{r}")
            os.mkdir(d)
            got = bench_ops(n_small, n_big, d) + [bench_procs(n_proc, d)]
            if not rows:
                rows = got
            else:
                for (_, acc), (_, new) in zip(rows, got):
                    for k, xs in new.items():
                        if xs is not None and acc.get(k) is not None:
                            acc[k] = acc[k] + xs  # type: ignore[operator]
            shutil.rmtree(d, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    md = render(rows, a.quick)
    if a.repeat > 1:
        md += f"\n\n({a.repeat} runs, samples pooled.)"
    print(md)
    if a.out:
        with open(a.out, "w") as f:
            f.write(md + "\n")


if __name__ == "__main__":
    main()

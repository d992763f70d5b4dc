"""python-diskcache side of `cargo bench --bench compare`.

Reads the payloads the Rust harness wrote (payloads/<workload>/<i>.bin),
runs the same operations, prints one JSON object: {workload: {op: ns_per_op}}
plus {"zipf": {"1t": ops_per_s, "2p": ops_per_s}}.
usage: diskcache_bench.py WORKDIR N_OPS [zipf-worker ROOT SEED OPS]
"""
import json
import os
import sys
import time
import multiprocessing as mp

import diskcache


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def timed(fn, n, reps=5):
    runs = []
    for r in range(reps):
        t = time.perf_counter_ns()
        fn(r)
        runs.append((time.perf_counter_ns() - t) / n)
    return median(runs)


def load(workdir, name):
    d = os.path.join(workdir, "payloads", name)
    return [open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d), key=lambda s: int(s.split(".")[0]))]


def zipf_keys(n_keys, n_ops, seed):
    # Same sampler as the Rust harness: inverse CDF over ranks, s = 1.0.
    import bisect
    cdf, total = [], 0.0
    for r in range(1, n_keys + 1):
        total += 1.0 / r
        cdf.append(total)
    x = seed * 0x9E3779B97F4A7C15 % (1 << 64) | 1
    out = []
    for _ in range(n_ops):
        x ^= (x << 13) % (1 << 64)
        x ^= x >> 7
        x ^= (x << 17) % (1 << 64)
        u = (x >> 11) / float(1 << 53) * total
        out.append(bisect.bisect_left(cdf, u))
    return out


def zipf_run(root, seed, ops, value):
    c = diskcache.Cache(root)
    keys = zipf_keys(100_000, ops, seed)
    t = time.perf_counter()
    for i, k in enumerate(keys):
        key = "odds:z%d:1" % k
        if i % 10 == 0:
            c.set(key, value)
        else:
            c.get(key)
    return ops / (time.perf_counter() - t)


def main():
    workdir, n = sys.argv[1], int(sys.argv[2])
    out = {}
    for name in ["odds_4k", "embedding_6k", "news_4_5k", "feature_1m"]:
        vals = load(workdir, name)
        nn = n if name != "feature_1m" else max(8, n // 200)
        c = diskcache.Cache(os.path.join(workdir, "dc-" + name))
        r = {}
        r["put"] = timed(lambda rep: [c.set("%s:%d:%d" % (name, rep, i), vals[i % len(vals)]) for i in range(nn)], nn)
        r["get"] = timed(lambda rep: [c.get("%s:%d:%d" % (name, rep, i)) for i in range(nn)], nn)
        r["get_hot"] = timed(lambda rep: [c.get("%s:0:%d" % (name, i % 64)) for i in range(nn)], nn)
        r["miss"] = timed(lambda rep: [c.get("nope:%d:%d" % (rep, i)) for i in range(nn)], nn)
        out[name] = r
        c.close()
    value = load(workdir, "odds_4k")[0]
    root = os.path.join(workdir, "dc-zipf")
    c = diskcache.Cache(root)
    for k in range(100_000):
        c.set("odds:z%d:1" % k, value)
    c.close()
    ops = 20_000
    z = {"1t": zipf_run(root, 1, ops, value)}
    with mp.Pool(2) as pool:
        t = time.perf_counter()
        pool.starmap(zipf_run, [(root, 2, ops, value), (root, 3, ops, value)])
        z["2p"] = 2 * ops / (time.perf_counter() - t)
    out["zipf"] = z
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""python-diskcache worker of `cargo bench --bench compare`.

One process runs one phase (setup, small, large, uniform, mix, rw) of the
spec given as JSON in argv[1] (the Rust worker's `Spec`) and prints
{"fingerprint": ..., "results": {op: {ops, secs, t0, t1, threads, samples}}}.
Payloads, keys and access sequences are generated from the same seeds with
the same functions as benches/compare/gen.rs; the fingerprint proves it.
The default `diskcache.Cache(directory)` is used throughout.
usage: diskcache_bench.py SPEC_JSON
"""
import bisect
import json
import sys
import threading
import time

import diskcache

M = (1 << 64) - 1
BASES = 64
STAMP_AT = 7
LEN = {"odds4k": 4096, "rand6k": 6144, "json1m": 1 << 20}
SALT = {"odds4k": 1, "rand6k": 2, "json1m": 3}


def xorshift(x):
    x ^= (x << 13) & M
    x ^= x >> 7
    x ^= (x << 17) & M
    return x


def seeded(seed):
    return (((seed + 1) * 0x9E3779B97F4A7C15) & M) | 1


def base(kind, j):
    x = seeded(SALT[kind] * 1000 + j)
    n = LEN[kind]
    if kind == "rand6k":
        out = bytearray()
        while len(out) < n:
            x = xorshift(x)
            out += x.to_bytes(8, "little")
        return bytes(out[:n])
    parts = ['{"id":"0000000000000000","items":[']
    size = len(parts[0])
    while size < n:
        x = xorshift(x)
        r = x
        p = '{"book":"b%d","home":-%d,"away":%d,"t":%d.5},' % (
            r % 40, 100 + r % 60, 100 + (r >> 8) % 50, 38 + (r >> 16) % 20)
        parts.append(p)
        size += len(p)
    s = "".join(parts)
    return (s[:n - 2] + "]}").encode()


def stamp(i):
    return ("%016x" % i).encode()


class Payloads:
    def __init__(self, kind):
        self.kind = kind
        n = 4 if kind == "json1m" else BASES
        self.bases = [base(kind, j) for j in range(n)]

    def value(self, i):
        b = bytearray(self.bases[i % len(self.bases)])
        b[STAMP_AT:STAMP_AT + 16] = stamp(i)
        return bytes(b)

    def check(self, got, i):
        return got is not None and len(got) == LEN[self.kind] and got[STAMP_AT:STAMP_AT + 16] == stamp(i)


class Zipf:
    def __init__(self, n, seed):
        self.cdf, total = [], 0.0
        for r in range(1, n + 1):
            total += 1.0 / r
            self.cdf.append(total)
        self.x = seeded(seed)

    def next(self):
        self.x = xorshift(self.x)
        u = (self.x >> 11) / float(1 << 53) * self.cdf[-1]
        return bisect.bisect_left(self.cdf, u)


class Uniform:
    def __init__(self, n, seed):
        self.n, self.x = n, seeded(seed)

    def next(self):
        self.x = xorshift(self.x)
        return self.x % self.n


def permutation(n, seed):
    p = list(range(n))
    x = seeded(seed)
    for i in range(n - 1, 0, -1):
        x = xorshift(x)
        j = x % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def fingerprint(keys):
    h = 0xCBF29CE484222325
    big = bytearray(base("json1m", 5 % 4))  # Payloads("json1m").value(5), one base only
    big[STAMP_AT:STAMP_AT + 16] = stamp(5)
    data = Payloads("odds4k").value(12345) + Payloads("rand6k").value(77) + bytes(big[:8192])
    z, u = Zipf(keys, 9), Uniform(keys, 9)
    s = "".join("%d,%d;" % (z.next(), u.next()) for _ in range(64))
    s += "".join("%d;" % i for i in permutation(100, 9))
    for c in data + s.encode():
        h = ((h ^ c) * 0x100000001B3) & M
    return "%016x" % h


def set_key(i):
    return "bench:u:%d" % i


def round_key(rnd, tag, i):
    return "bench:r%d:%s:%d" % (rnd, tag, i)


class Rec:
    def __init__(self):
        self.samples = []
        self.threads = []
        self.t0 = self.t1 = 0
        self.started = None

    def start(self):
        self.t0 = time.time_ns()
        self.started = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.started

    def json(self):
        if not self.t1:
            self.t1 = time.time_ns()
        secs = self.elapsed() if self.started is not None else (self.t1 - self.t0) / 1e9
        return {"ops": len(self.samples), "secs": secs, "t0": self.t0, "t1": self.t1,
                "threads": self.threads, "samples": self.samples}


def merge(parts):
    r = Rec()
    r.t0 = min(p.t0 for p, _ in parts)
    for p, secs in parts:
        r.threads.append([len(p.samples), secs])
        r.samples.extend(p.samples)
    r.t1 = time.time_ns()
    return r


def timed(rec, fn, *args):
    t = time.perf_counter_ns()
    out = fn(*args)
    rec.samples.append(time.perf_counter_ns() - t)
    return out


def setup(s, out):
    p = Payloads("odds4k")
    c = diskcache.Cache(s["dir"])
    t = time.perf_counter()
    for start in range(0, s["keys"], 5000):
        with c.transact():
            for i in range(start, min(start + 5000, s["keys"])):
                c.set(set_key(i), p.value(i))
    out["setup"] = {"secs": time.perf_counter() - t}
    c.close()


def small(s, out):
    odds, rand = Payloads("odds4k"), Payloads("rand6k")
    n, rnd = s["n"], s["round"]
    w = diskcache.Cache(s["dir"])
    for tag, p, op in [("o", odds, "put_odds_4k"), ("r", rand, "put_rand_6k")]:
        items = [(round_key(rnd, tag, i), p.value(i)) for i in range(n)]
        r = Rec()
        r.start()
        for k, v in items:
            timed(r, w.set, k, v)
        out[op] = r.json()
    w.close()
    h = diskcache.Cache(s["dir"])
    keys = [round_key(rnd, "o", i) for i in range(n)]
    r = Rec()
    r.start()
    for i in permutation(n, s["seed"]):
        assert odds.check(timed(r, h.get, keys[i]), i)
    out["get_disk_4k"] = r.json()
    hot = min(64, n)
    for i in range(hot):
        h.get(keys[i])
        h.get(keys[i])
    r = Rec()
    r.start()
    for i in range(n):
        assert odds.check(timed(r, h.get, keys[i % hot]), i % hot)
    out["get_hot_4k"] = r.json()
    absent = [round_key(rnd, "nope", i) for i in range(n)]
    r = Rec()
    r.start()
    for k in absent:
        assert timed(r, h.get, k) is None
    out["miss"] = r.json()
    h.close()


def large(s, out):
    p = Payloads("json1m")
    m1, rnd = s["m1"], s["round"]
    w = diskcache.Cache(s["dir"])
    r = Rec()
    r.start()
    for i in range(m1):
        v = p.value(i)
        timed(r, w.set, round_key(rnd, "m", i), v)
    out["put_1m"] = r.json()
    w.close()
    r = Rec()
    r.start()
    for i in permutation(m1, s["seed"]):
        h = diskcache.Cache(s["dir"])
        assert p.check(timed(r, h.get, round_key(rnd, "m", i)), i)
        h.close()
    out["get_1m_first"] = r.json()
    h = diskcache.Cache(s["dir"])
    few = min(m1, 4)
    keys = [round_key(rnd, "m", i) for i in range(few)]
    for k in keys:
        h.get(k)
    r = Rec()
    r.start()
    for i in range(s["repeat"]):
        assert p.check(timed(r, h.get, keys[i % few]), i % few)
    out["get_1m_repeat"] = r.json()
    h.close()


def fresh_number(s, i):
    return (1 << 40) + (s["seed"] << 24) + i


def uniform(s, out):
    h = diskcache.Cache(s["dir"])
    u = Uniform(s["keys"], s["seed"])
    keys = [set_key(u.next()) for _ in range(s["ops"])]
    r = Rec()
    r.start()
    for k in keys:
        assert len(timed(r, h.get, k)) == 4096
    out["get_uniform"] = r.json()
    h.close()


def wait_until(at):
    now = time.time_ns()
    if at > now:
        time.sleep((at - now) / 1e9)


def mix(s, out):
    p = Payloads("odds4k")
    h = diskcache.Cache(s["dir"])
    z = Zipf(s["keys"], s["seed"])
    keys = [set_key(z.next()) for _ in range(s["ops"])]
    r = Rec()
    wait_until(s["start_at"])
    r.start()
    for i, k in enumerate(keys):
        if i % 10 == 0:
            v = p.value(fresh_number(s, i))
            timed(r, h.set, k, v)
        else:
            assert len(timed(r, h.get, k)) == 4096
    out["mix"] = r.json()
    h.close()


def rw(s, out):
    p = Payloads("odds4k")
    h = diskcache.Cache(s["dir"])
    deadline = time.perf_counter() + s["secs"]
    results = {}

    def writer():
        u, r, i = Uniform(s["keys"], s["seed"]), Rec(), 0
        r.start()
        while time.perf_counter() < deadline:
            k, v = set_key(u.next()), p.value(fresh_number(s, i))
            timed(r, h.set, k, v)
            i += 1
        results["w"] = (r, r.elapsed())

    def reader(j):
        u, r = Uniform(s["keys"], s["seed"] + 1 + j), Rec()
        r.start()
        while time.perf_counter() < deadline:
            k = set_key(u.next())
            assert len(timed(r, h.get, k)) == 4096
        results[j] = (r, r.elapsed())

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader, args=(j,)) for j in range(s["readers"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w = merge([results["w"]])
    rd = merge([results[j] for j in range(s["readers"])])
    for name, rec in [("rw_writer", w), ("rw_reader", rd)]:
        d = rec.json()
        d["secs"] = max(secs for _, secs in rec.threads)
        out[name] = d
    h.close()


PHASES = {"setup": setup, "small": small, "large": large, "uniform": uniform, "mix": mix, "rw": rw}


def main():
    s = json.loads(sys.argv[1])
    out = {}
    PHASES[s["phase"]](s, out)
    print(json.dumps({"fingerprint": fingerprint(s["keys"]), "results": out}))


if __name__ == "__main__":
    main()

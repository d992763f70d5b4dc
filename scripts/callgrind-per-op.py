"""Helper of scripts/compare-callgrind: instructions per operation from the
callgrind dumps of one worker run (one dump per operation, in the order the
worker finishes them). usage: callgrind-per-op.py SYSTEM PHASE OUT_BASE"""
import glob
import json
import sys

system, phase, base = sys.argv[1:]
order = {
    ("freshcache", "small"): ["put_odds_4k", "put_rand_6k", "get_disk_4k", "get_hot_4k", "miss"],
    ("freshcache", "large"): ["put_1m", "get_1m_first", "get_1m_repeat"],
    ("floor", "small"): ["sqlite_put_4k", "sqlite_get_4k", "sqlite_miss", "file_put_4k", "file_read_4k"],
    ("floor", "large"): ["file_read_1m", "blake3_1m"],
}[(system, phase)]
res = json.load(open(base + ".json"))["results"]
dumps = sorted((f for f in glob.glob(base + ".*") if f.rsplit(".", 1)[1].isdigit()),
               key=lambda f: int(f.rsplit(".", 1)[1]))
for op, f in zip(order, dumps):
    ir = 0
    for line in open(f):
        if line.startswith(("summary:", "totals:")):
            ir = int(line.split()[1])
            break
    print("%-10s %-14s %12.0f instructions/op" % (system, op, ir / max(res[op]["ops"], 1)))

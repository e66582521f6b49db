#!/usr/bin/env python3
# Integration: a tiny run of the fan-out benchmark (tests/bench/bench_fanout.py, 2 sites) so that it keeps working.
# SPDX-License-Identifier: MIT
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402


def main(h):
    bench = os.path.join(h.src_dir, "tests", "bench", "bench_fanout.py")
    # The bench's own harness inherits TETHER_TEST_DB: its hubs run on
    # PostgreSQL too, each on a database of its own.
    if h.db_backend == "pg":
        h.pg_require_hub_support()
    out = h.path("bench.json")
    env = dict(h.env, TETHER_BIN=h.bin_dir, TETHER_SRC=h.src_dir)
    r = h.run([sys.executable, bench, "--sites", "1,2", "--queries", "5", "--out", out],
              timeout=240, env=env)
    h.check(r.rc == 0, "bench_fanout.py --sites 1,2 --queries 5 exits 0", r)
    res = json.load(open(out)) if os.path.exists(out) else []
    h.check([x.get("sites") for x in res] == [1, 2], "it reports both sizes", res)
    for x in res:
        h.check(x["failed_results"] == 0, "%d site(s): every result done" % x["sites"], x)
        h.check(0 < x["fanout_p50_ms"] <= x["fanout_p99_ms"] <= x["fanout_max_ms"] < 10000,
                "%d site(s): 0 < p50 <= p99 <= max, under 10 s" % x["sites"], x)
    h.check("SITES  QUERIES  P50_MS" in r.stdout, "it prints the summary table", r.stdout[-400:])


Harness.main("test_query_bench_smoke", main)

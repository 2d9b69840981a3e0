#!/usr/bin/env python3
"""Two hub processes on one PostgreSQL database: how long from the CDP posting
a change to hub A until a terminal's long-poll on hub B answers with it.
Baseline in the same run: the same change and long-poll on one hub (the
in-process wake-up). Run it beside a throwaway PostgreSQL server:

    tests/tools/with_pg.sh python3 bench/cross_hub_latency.py [--bin build/dev] [--changes 50]

Every change is a new HTTPS connection to the hub (the TLS handshake is part
of both figures). Uses the black-box test harness (tests/blackbox/tslib.py).
"""
import argparse
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "blackbox"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "dev"))
    ap.add_argument("--changes", type=int, default=50)
    a = ap.parse_args()
    os.environ["TS_BIN_DIR"] = os.path.abspath(a.bin)
    import tslib
    from test_pg import read_feed, rename, request, send, start_hubs
    if not tslib.PG_URI:
        raise SystemExit("TS_TEST_PG is not set: run under tests/tools/with_pg.sh")
    w = tslib.World("xhub")
    try:
        hub_a, hub_b = start_hubs(w)
        send(w, hub_a["port"], tslib.customer_batch())

        def one(i, writer, reader):
            _, cur = read_feed(w, reader["port"])
            res = {}

            def poll():
                res["ans"] = request(w, reader["port"], "GET", f"/v1/feed?since={cur}&wait=20",
                                     timeout=30)
                res["t"] = time.monotonic()

            t = threading.Thread(target=poll)
            t.start()
            time.sleep(0.2)  # the long-poll is waiting
            t0 = time.monotonic()
            st, _ = send(w, writer["port"], [rename("u-ada", f"Ada {i}", f"x{i}-{writer['port']}")])
            t.join()
            st2, page = res["ans"]
            if st != 200 or st2 != 200 or not page["items"]:
                raise SystemExit(f"change {i}: batch {st}, long-poll {st2} {page}")
            return (res["t"] - t0) * 1000

        out = {}
        for name, writer, reader in (("same hub", hub_b, hub_b), ("other hub", hub_a, hub_b)):
            lat = sorted(one(i, writer, reader) for i in range(a.changes))
            out[name] = lat
            print(f"{name:9s}: median {statistics.median(lat):6.1f} ms  p90 "
                  f"{lat[int(0.9 * (len(lat) - 1))]:6.1f} ms  max {lat[-1]:6.1f} ms"
                  f"  ({len(lat)} changes)")
        print(f"ratio other/same (medians): "
              f"{statistics.median(out['other hub']) / statistics.median(out['same hub']):.2f}")
    finally:
        w.close(True)


if __name__ == "__main__":
    main()

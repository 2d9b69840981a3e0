"""Link down and back: synced customers are still found from the cache while
the hub is stopped and status says offline; when the hub comes back the agent
resumes from its saved cursor instead of downloading the slice again."""
import re

import tslib
from tslib import check, wait_for

N = 40


def feed_lines(log):
    """(since, items) of every feed request the hub logged."""
    return [(m.group(1), int(m.group(2)))
            for m in re.finditer(r"feed store=S001 since=(\S+) items=(\d+)", log)]


def hub_down_then_up(w):
    w.start_hub()
    batch = []
    for i in range(N):
        batch += tslib.customer_batch(user=f"u{i}", loyalty=f"20000000{i:05d}",
                                      name=f"Customer {i}")
    s, body = w.send_batch(batch)
    check(s == 200, f"batch: {s} {body}")
    w.start_agent()
    w.wait_cards(N)
    applied_before = w.status()["feed_items_applied"]
    check(applied_before == N, f"expected {N} items applied, got {applied_before}")

    # Link down.
    w.hub.stop()
    st = wait_for(lambda: w.status()["link"] == "offline" and w.status(),
                  what="status to say offline")
    s, sess = w.api("POST", "/api/v1/scan", {"code": "2000000000007"})
    check(s == 200 and sess["status"] == "found" and sess["card"]["name"] == "Customer 7",
          f"offline scan: {s} {sess}")
    check(sess["link"] == "offline", f"card must show offline: {sess.get('link')}")
    p = w.cli("status")
    check("offline" in p.stdout, f"status CLI while offline: {p.stdout}")

    # The agent restarts while the hub is still down: the cache and the
    # cursor are on disk.
    w.agent.stop()
    w.start_agent()
    check(w.status()["cards"] == N, "cache lost across agent restart")

    # Hub back: the agent resumes from its saved cursor.
    hub_log_len = len(w.hub.log())
    w.start_hub()
    wait_for(lambda: w.status()["link"] == "online", what="link back online")
    wait_for(lambda: feed_lines(w.hub.log()[hub_log_len:]), what="a feed request after restart")
    after = feed_lines(w.hub.log()[hub_log_len:])
    check(all(since != "-" for since, _ in after),
          f"agent asked for the whole slice again: {after}")
    check(sum(items for _, items in after) == 0, f"hub re-sent cards: {after}")
    check(w.status()["feed_items_applied"] == 0, "restarted agent re-applied items")

    # A change made while it was away still arrives.
    s, _ = w.send_batch(tslib.customer_batch(user="u-new", loyalty="2000000099999",
                                             name="Newcomer"))
    check(s == 200, "batch after restart")
    w.wait_cards(N + 1)
    after = feed_lines(w.hub.log()[hub_log_len:])
    check(sum(items for _, items in after) == 1, f"only the new card should travel: {after}")


if __name__ == "__main__":
    tslib.main({"hub_down_then_up": hub_down_then_up})

"""Black-box test of the local API under a flood of event streams: one local
process opening 2,000 SSE streams (and holding the newest open) cannot take
the associate page offline — the page loads throughout, and a stream opened
afterwards (the page reconnecting) gets the next scan. Each client keeps at
most a few streams (a new one closes its oldest), so the API's connections
stay free for the page and the other requests (docs/PROTOCOL.md)."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tslib import SSEClient, check, customer_batch, main, metric  # noqa: E402


def stream_flood_leaves_page_up(w):
    w.start_hub()
    st, _ = w.send_batch(customer_batch())
    check(st == 200, f"CDP batch answered {st}")
    w.start_agent()
    w.wait_cards(1)
    port = w.api_port
    req = (f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           "Accept: text/event-stream\r\n\r\n").encode()
    held = []
    t0 = time.monotonic()
    for i in range(2000):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(req)
        held.append(s)
        if len(held) > 64:  # the flooder keeps its newest 64 open
            held.pop(0).close()
        if i % 250 == 0:
            t = time.monotonic()
            st, page = w.api("GET", "/")
            check(st == 200 and "EventSource" in page, f"page during the flood: {st}")
            check(time.monotonic() - t < 2, f"the page took {time.monotonic() - t:.1f} s")
    flood_s = time.monotonic() - t0
    # The flooder still holds its connections; the page reconnects. Requests
    # the flooder sent last may still be on their way in (a thread each), so
    # the page's new stream can be the oldest when one of them arrives and be
    # closed for it: the page's EventSource then opens it again, as here.
    st, page = w.api("GET", "/")
    check(st == 200 and "EventSource" in page, f"page after the flood: {st}")
    sse = SSEClient(port, reconnect=True)
    try:
        st, _ = w.api("POST", "/api/v1/scan", {"code": "2000000000015"})
        check(st == 200, f"scan answered {st}")
        ev = sse.wait_event("customer", lambda d: d.get("card", {}).get("name") == "Ada Lovelace",
                            timeout=10)
        check(ev, "the scan did not reach the page's stream")
    finally:
        sse.close()
    st, text = w.api("GET", "/metrics")
    opened = metric(text, "tillside_api_event_streams")
    closed = metric(text, "tillside_api_event_streams_closed_total")
    check(opened is not None and opened <= 4, f"{opened} streams open for one client")
    # (attempts the flooder dropped before the agent read them never became streams)
    check(closed is not None and closed >= 1000, f"only {closed} old streams closed")
    check(w.agent.log().count("\n") < 500, "the flood flooded the log")
    for s in held:
        s.close()
    print(f"2000 stream attempts in {flood_s:.1f} s; the page's stream reconnected "
          f"{sse.reconnects} time(s)")


if __name__ == "__main__":
    main({"stream_flood_leaves_page_up": stream_flood_leaves_page_up})

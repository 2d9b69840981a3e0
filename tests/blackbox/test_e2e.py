"""End to end: online behaviour into the hub, the slice into the agent over
mutual TLS, a scan into a customer card on the SSE stream and the session."""
import tslib
from tslib import check, SSEClient


def interests_of(card):
    return {i["product_id"]: i for i in card.get("interests", [])}


def scan_shows_card(w):
    w.start_hub()
    s, body = w.send_batch(tslib.customer_batch())
    check(s == 200 and body.get("success") is True, f"batch refused: {s} {body}")
    w.start_agent()
    w.wait_cards(1)

    sse = SSEClient(w.api_port)
    try:
        s, sess = w.api("POST", "/api/v1/scan", {"code": "2000000000015", "aim": "]E0"})
        check(s == 200, f"scan answered {s}: {sess}")
        ev = sse.wait_event("customer", lambda d: d.get("status") == "found")
    finally:
        sse.close()

    for where, session in (("SSE", ev), ("/api/v1/session", w.api("GET", "/api/v1/session")[1])):
        card = session["card"]
        check(card["name"] == "Ada Lovelace", f"{where}: name {card.get('name')}")
        check(card["tier"] == "gold", f"{where}: tier {card.get('tier')}")
        it = interests_of(card)
        check("SKU-RUN-42" in it and it["SKU-RUN-42"]["signal"] == "viewed"
              and it["SKU-RUN-42"]["count"] == 3, f"{where}: viewed x3 missing: {it}")
        check("SKU-JKT-7" in it and it["SKU-JKT-7"]["signal"] == "cart",
              f"{where}: cart item missing: {it}")
        check(session["source"] == "cache", f"{where}: source {session.get('source')}")
        check("2000000000015" not in str(session), f"{where}: raw code exposed")

    # The CLI paths see the same customer.
    p = w.cli("lookup", "2000000000015")
    check(p.returncode == 0 and "Ada Lovelace" in p.stdout, f"lookup CLI: {p.stdout}{p.stderr}")
    p = w.cli("scan", "2000000000015")
    check(p.returncode == 0 and "Ada Lovelace" in p.stdout and "Rain Jacket" in p.stdout,
          f"scan CLI: {p.stdout}{p.stderr}")
    p = w.cli("status")
    check(p.returncode == 0 and "online" in p.stdout, f"status CLI: {p.stdout}{p.stderr}")
    p = w.cli("version")
    check(p.returncode == 0 and "tillside" in p.stdout, f"version CLI: {p.stdout}")

    # The raw loyalty number is never stored in the agent's cache.
    import glob
    for f in glob.glob(f"{w.dir}/agent/cache.db*"):
        with open(f, "rb") as fh:
            check(b"2000000000015" not in fh.read(), f"raw loyalty number found in {f}")


def page_is_served(w):
    w.start_hub()
    w.start_agent()
    s, html = w.api("GET", "/")
    check(s == 200 and "<html" in html.lower(), f"page: {s}")
    check("http://" not in html.replace(f"127.0.0.1:{w.api_port}", "") and
          "https://" not in html, "page references external assets")
    s, _ = w.api("GET", "/livez")
    check(s == 200, "livez")
    s, _ = w.api("GET", "/api/v1/session")
    check(s == 204, f"no session yet should be 204, got {s}")


if __name__ == "__main__":
    tslib.main({"scan_shows_card": scan_shows_card, "page_is_served": page_is_served})

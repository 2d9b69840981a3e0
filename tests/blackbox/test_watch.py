"""`tillside watch` in a real terminal (tmux): a scan shows the name and an
interest, a narrower window still shows them without overflowing, a clear
goes back to the idle screen, a purchase clears the card, a return and a
consent are noted."""
import shutil
import subprocess
import time

import tslib
from tslib import check, wait_for


def tmux(w, *args):
    return subprocess.run(["tmux", "-L", f"ts-{w.api_port}", *args], capture_output=True,
                          text=True, timeout=10)


def pane(w):
    return tmux(w, "capture-pane", "-p", "-t", "watch").stdout


def watch_shows_card(w):
    if not shutil.which("tmux"):
        print("tmux missing: ./run test installs it")
        raise SystemExit(77)
    w.start_hub()
    w.send_batch(tslib.customer_batch())
    w.start_agent()
    w.wait_cards(1)
    conf = w.agent_conf_path
    r = tmux(w, "new-session", "-d", "-s", "watch", "-x", "100", "-y", "30",
             f"{tslib.AGENT_BIN} watch -c {conf}")
    check(r.returncode == 0, f"tmux: {r.stderr}")
    try:
        wait_for(lambda: "Scan a loyalty card" in pane(w), what="the idle screen")
        s, _ = w.api("POST", "/api/v1/scan", {"code": "2000000000015"})
        check(s == 200, "scan")
        text = wait_for(lambda: "Ada Lovelace" in pane(w) and pane(w), what="the card in watch")
        check("Trail Runner 42" in text and "viewed x3" in text, f"interest missing:\n{text}")
        check("Rain Jacket" in text and "in online cart" in text, f"cart missing:\n{text}")

        tmux(w, "resize-window", "-t", "watch", "-x", "40", "-y", "20")
        time.sleep(0.3)
        text = wait_for(lambda: "Ada Lovelace" in pane(w) and pane(w), what="redraw after resize")
        widest = max(len(line.rstrip()) for line in text.splitlines())
        check(widest <= 40, f"lines overflow a 40-column window ({widest}):\n{text}")

        s, _ = w.api("POST", "/api/v1/session/clear", {})
        check(s == 200, "clear")
        wait_for(lambda: "Scan a loyalty card" in pane(w) and "Ada" not in pane(w),
                 what="the idle screen after clear")

        # The agent restarting is survived: watch reconnects and shows the
        # next scan.
        w.agent.stop()
        wait_for(lambda: "reconnecting" in pane(w), what="reconnecting notice")
        w.start_agent()
        opened = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 1))
        w.api("POST", "/api/v1/scan", {"code": "2000000000015"})
        wait_for(lambda: "Ada Lovelace" in pane(w), what="the card after reconnect")

        # A purchase for the customer scanned inside the sale: noted, and the card goes.
        s, body = w.api("POST", "/api/v1/purchases", {
            "receipt": "S001-T01-000777", "currency": "EUR", "total": 19.0,
            "transaction_started_at": opened,
            "products": [{"sku": "SKU-HAT-1", "name": "Wool Hat", "quantity": 1, "price": 19.0}]})
        check(s == 202, f"purchase answered {s}: {body}")
        text = wait_for(lambda: "Purchase recorded" in pane(w) and "Ada" not in pane(w)
                        and pane(w), what="the purchase noted and the card cleared")
        check("S001-T01-000777" in text and "Scan a loyalty card" in text, f"after purchase:\n{text}")

        # A return and a consent leave their line (issue 18).
        s, body = w.api("POST", "/api/v1/returns", {
            "return_id": "R-777", "original_receipt": "S001-T01-000777", "currency": "EUR",
            "total": 19.0,
            "products": [{"sku": "SKU-HAT-1", "name": "Wool Hat", "quantity": 1, "price": 19.0}]})
        check(s == 202, f"return answered {s}: {body}")
        # (the window is 40 columns wide since the resize above)
        wait_for(lambda: "Return recorded" in pane(w) and "R-777" in pane(w),
                 what="the return in watch")
        w.api("POST", "/api/v1/scan", {"code": "2000000000015"})
        s, body = w.api("POST", "/api/v1/consent", {"personalization": False})
        check(s == 202, f"consent answered {s}: {body}")
        wait_for(lambda: "Consent recorded" in pane(w) and "personalisation" in pane(w)
                 and "off" in pane(w), what="the consent in watch")
    finally:
        tmux(w, "kill-server")


if __name__ == "__main__":
    tslib.main({"watch_shows_card": watch_shows_card})

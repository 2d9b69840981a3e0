"""The associate page's consent control in Chromium (issue 18): runs
tests/browser/consent_test.js against a real agent synced from a real hub."""
import os
import shutil
import subprocess

import tslib
from tslib import check

from test_browser import BROWSER_DIR


def consent_control_in_chromium(w):
    missing = [t for t in ("node", "/usr/bin/chromium") if not shutil.which(t)]
    if missing or not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        print(f"skipped: {missing or 'playwright-core'} missing (./run test installs them)")
        raise SystemExit(77)
    w.start_hub()
    s, body = w.send_batch(tslib.customer_batch())
    check(s == 200, f"batch: {s} {body}")
    w.start_agent()
    w.wait_cards(1)
    env = dict(os.environ, TS_API=f"http://127.0.0.1:{w.api_port}", TS_TOKEN=w.token())
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "consent_test.js")], env=env,
                       capture_output=True, text=True, timeout=240)
    print(r.stdout, end="")
    check(r.returncode == 0, f"consent scenarios failed:\n{r.stdout}\n{r.stderr}")
    check("recorded consent" in w.agent.log(), "the agent did not record the consent")


if __name__ == "__main__":
    tslib.main({"consent_control_in_chromium": consent_control_in_chromium})

"""`./run demo` runs long enough to fetch the page and the API through curl,
then stops cleanly on Ctrl-C (SIGINT) and leaves no process behind."""
import os
import signal
import subprocess
import time

import tslib
from tslib import check, wait_for

ROOT = os.environ.get("TS_SRC_DIR", os.path.join(os.path.dirname(__file__), "../.."))


def demo_runs(w):
    env = dict(os.environ, TS_DEMO_BIN_DIR=tslib.BIN, TS_DEMO_DIR=os.path.join(w.dir, "demo"),
               TS_DEMO_HUB_PORT=str(w.hub_port), TS_DEMO_API_PORT=str(w.api_port),
               TS_DEMO_CUSTOMERS="500")
    out_path = os.path.join(w.dir, "demo.out")
    with open(out_path, "wb") as out:
        p = subprocess.Popen([os.path.join(ROOT, "run"), "demo"], env=env, stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        def output():
            with open(out_path, errors="replace") as f:
                return f.read()
        wait_for(lambda: "Associate page:" in output() or p.poll() is not None, timeout=180,
                 what="the demo to come up")
        check(p.poll() is None, f"demo exited early:\n{output()}")
        url = f"http://127.0.0.1:{w.api_port}/"
        check(url in output(), f"demo did not print the page URL:\n{output()}")
        page = subprocess.run(["curl", "-fsS", url], capture_output=True, text=True)
        check(page.returncode == 0 and "<html" in page.stdout.lower(), f"page: {page.stderr}")
        st = subprocess.run(["curl", "-fsS", url + "api/v1/status"], capture_output=True,
                            text=True)
        check(st.returncode == 0 and '"online"' in st.stdout, f"status: {st.stdout}{st.stderr}")
        check("unknown customer" in output().lower(), "demo did not show an unknown scan")
        check("HTTP 202" in output() and "uploaded to the hub" in output(),
              f"demo's purchase did not go through:\n{output()[-2000:]}")
        os.kill(p.pid, signal.SIGINT)
        rc = p.wait(30)
        check(rc == 0, f"demo exited {rc} on Ctrl-C:\n{output()[-2000:]}")
        time.sleep(0.5)
        left = subprocess.run(["pgrep", "-f", os.path.join(w.dir, "demo")], capture_output=True,
                              text=True)
        check(left.stdout.strip() == "", f"processes left behind: {left.stdout}")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    tslib.main({"demo_runs": demo_runs})

"""The harness itself: what every black-box test relies on."""
import os
import subprocess
import sys
import time

import tslib
from tslib import Fail, Proc, check, wait_for


def died_fails_fast(w):
    """A daemon that exits at start is reported at once, not after the
    predicate's timeout."""
    p = Proc("false", ["sh", "-c", "echo cannot start; exit 3"], os.path.join(w.dir, "f.log"))
    t0 = time.monotonic()
    try:
        wait_for(lambda: (not p.alive() and w._died(p)), timeout=30, what="never")
    except Fail as e:
        took = time.monotonic() - t0
        check("exited early with 3" in str(e) and "cannot start" in str(e), f"message: {e}")
        check(took < 10, f"took {took:.1f} s of the 30 s timeout to report the exit")
        print(f"reported after {took:.2f} s: {str(e).splitlines()[0]}")
        return
    raise Fail("wait_for returned for a predicate that can only fail")


def ports_are_reserved(w):
    """Ports handed out are below the ephemeral range, distinct, and not
    handed to another test process while this one lives."""
    lo, _ = tslib._ephemeral_range()
    mine = [tslib.free_port() for _ in range(50)]
    check(len(set(mine)) == 50, f"duplicates among {mine}")
    check(all(p < lo for p in mine), f"a port inside the ephemeral range: {mine}")
    code = ("import sys; sys.path.insert(0, %r); import tslib; "
            "print(' '.join(str(tslib.free_port()) for _ in range(200)))"
            % os.path.dirname(os.path.abspath(__file__)))
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.split()
    clash = set(mine) & {int(x) for x in other}
    check(not clash, f"another process was given ports this one holds: {sorted(clash)}")
    print(f"50 + 200 ports, none shared, all below {lo}")


if __name__ == "__main__":
    tslib.main({"died_fails_fast": died_fails_fast, "ports_are_reserved": ports_are_reserved})

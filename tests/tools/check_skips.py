#!/usr/bin/env python3
"""check_skips.py JUNIT ALLOWLIST PRESET: fail when ctest skipped a test
(exit 77) that the allow-list does not name with a reason. Run by ./run
under CI=true.

The allow-list has one test per line, `NAME  reason` (any preset) or
`PRESET:NAME  reason` (that preset's suite only); `#` starts a comment.
Browser tests (bb_browser_*) may never be listed: the associate page must
not go untested."""
import sys
import xml.etree.ElementTree as ET


def main():
    junit, allow_path, preset = sys.argv[1], sys.argv[2], sys.argv[3]
    allowed = {}
    with open(allow_path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, _, why = line.partition(" ")
            if not why.strip():
                sys.exit(f"{allow_path}:{n}: {name} has no reason")
            only, _, test = name.rpartition(":")
            if test.startswith("bb_browser"):
                sys.exit(f"{allow_path}:{n}: {name}: browser tests may never be skipped")
            if only and only != preset:
                continue
            allowed[test] = why.strip()
    print(f"skips allowed under CI in the {preset} suite ({allow_path}): "
          + (", ".join(f"{k} ({v})" for k, v in sorted(allowed.items())) or "none"))
    tests = ET.parse(junit).getroot().iter("testcase")
    skipped = [t.get("name") for t in tests
               if t.get("status") in ("notrun", "skipped") or t.find("skipped") is not None]
    bad = [t for t in skipped if t not in allowed]
    for t in skipped:
        print(f"skipped: {t}" + ("" if t in allowed else "  <- not allowed"))
    if bad:
        print(f"FAIL: {len(bad)} test(s) skipped under CI without an allowed reason: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

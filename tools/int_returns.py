#!/usr/bin/env python3
"""Lists the functions defined in C files that return plain `int`, and what
their returns look like, for the enum ts_err audit (STYLE.md: a function that
can fail returns enum ts_err).

    python3 tools/int_returns.py agent common drivers sync [--skip sync/httpd]

Each line: file:line name kind, where kind is
  ts_err   returns a TS_* code or -1 next to others: should be enum ts_err
  flag     returns only 0 / -1 (or 0 / 1): a failure flag, should be enum ts_err
  exit     a program's or command's exit status (main, cmd_*, usage)
  value    returns something computed (a count, a length, a descriptor, a
           library's own code, ...)
Exits 1 when a ts_err or flag function is listed (0 otherwise)."""
import os
import re
import sys

DEF = re.compile(r'^(?:static\s+)?(?:inline\s+)?int\s+\**(\w+)\s*\(', re.M)
RET = re.compile(r'\breturn\b\s*([^;]*);')


def body_at(text, start):
    i = text.find('{', start)
    if i < 0 or ';' in text[start:i]:
        return None  # a declaration
    depth = 0
    for j in range(i, len(text)):
        if text[j] == '{':
            depth += 1
        elif text[j] == '}':
            depth -= 1
            if depth == 0:
                return text[i:j + 1]
    return None


EXIT = re.compile(r'(main|\w*_main|cmd_\w+|ts_cmd_\w+|\w*usage)$')


def kind(name, body):
    rets = [' '.join(r.split()) for r in RET.findall(body)]
    if EXIT.match(name):
        return 'exit', rets
    if any(r.startswith('TS_') or r.startswith('(int)TS_') for r in rets):
        return 'ts_err', rets
    if rets and all(r in ('0', '-1', '1') for r in rets) and '-1' in rets:
        return 'flag', rets
    if '-1' in rets and any(r in ('rc', 'err', 'r') for r in rets):
        return 'ts_err', rets
    # rc = ts_...(); return rc; with TS_* codes in the body
    if rets and ('TS_OK' in body or 'TS_ERR_' in body) and any(
            re.fullmatch(r'(\w+\.)?(rc|ret|result|err)', r) for r in rets):
        return 'ts_err', rets
    return 'value', rets


def main(argv):
    skip = []
    dirs = []
    it = iter(argv)
    for a in it:
        if a == '--skip':
            skip.append(next(it))
        else:
            dirs.append(a)
    bad = 0
    counts = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in sorted(files):
                if not f.endswith('.c'):
                    continue
                path = os.path.join(root, f)
                if any(path.startswith(s) for s in skip):
                    continue
                text = open(path, encoding='utf-8', errors='replace').read()
                for m in DEF.finditer(text):
                    body = body_at(text, m.end())
                    if body is None:
                        continue
                    k, rets = kind(m.group(1), body)
                    counts[k] = counts.get(k, 0) + 1
                    line = text.count('\n', 0, m.start()) + 1
                    shown = ', '.join(sorted(set(rets)))[:80]
                    print(f'{path}:{line} {m.group(1)} {k} [{shown}]')
                    if k in ('ts_err', 'flag'):
                        bad += 1
    print('total: ' + ', '.join(f'{k} {v}' for k, v in sorted(counts.items())))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

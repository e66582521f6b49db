#!/usr/bin/env python3
# Checks that the operator guide's table of hub log events matches the events the hub's code logs.
# SPDX-License-Identifier: MIT
"""Exit 1 when an event the hub logs (hub/**/*.c, log_event or refused())
is missing from the events table of docs/operator-guide.md, or the table
names an event with a level the code never logs it at, or an event the code
no longer has. Prints each difference.

  check-events.py [--root DIR]
"""
import os
import re
import sys

# log_event with the event as a string literal, possibly "a" : "b" or cond ? "a" : "b".
NAME_RE = re.compile(r'"([a-z][a-z0-9_]*)"')
# listen.c's rate-limited refusals: refused(h, &counter, "event", c) at warn.
REFUSED_RE = re.compile(r'\brefused\(\s*h\s*,\s*[^,]+,\s*"([a-z_]+)"')
LEVELS = {"DEBUG": "debug", "INFO": "info", "WARN": "warn", "ERROR": "error"}


def code_events(root):
    found = {}
    for d, _, files in os.walk(os.path.join(root, "hub")):
        for f in files:
            if not f.endswith(".c"):
                continue
            text = open(os.path.join(d, f), encoding="utf-8").read()
            # The level may be "cond ? LOG_WARN : LOG_DEBUG" (a first failure
            # warns, its repeats do not): the first one is the event's.
            for m in re.finditer(r'log_event\(\s*(?:[^,"]*?\?\s*)?LOG_([A-Z]+)'
                                 r'(?:\s*:\s*LOG_[A-Z]+)?\s*,\s*(.*?)\s*,\s*"', text, re.S):
                level, head = LEVELS[m.group(1)], m.group(2)
                for name in NAME_RE.findall(head):
                    found.setdefault(name, set()).add(level)
            for name in REFUSED_RE.findall(text):
                found.setdefault(name, set()).add("warn")
    return found


def doc_events(root):
    text = open(os.path.join(root, "docs", "operator-guide.md"), encoding="utf-8").read()
    start = text.index("Events of the hub:")
    rows = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z_]+)`", cells[0])
        levels = set(re.findall(r"\b(debug|info|warn|error)\b", cells[1]))
        for n in names:
            rows[n] = levels
    return rows


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if "--root" in argv:
        root = argv[argv.index("--root") + 1]
    code, doc = code_events(root), doc_events(root)
    problems = []
    for name in sorted(code):
        if name not in doc:
            problems.append("logged but not in the table: %s (%s)" % (name, "/".join(sorted(code[name]))))
        elif not code[name] <= doc[name]:
            problems.append("%s is logged at %s, the table says %s" % (
                name, "/".join(sorted(code[name])), "/".join(sorted(doc[name])) or "no level"))
    for name in sorted(set(doc) - set(code)):
        problems.append("in the table but never logged: %s" % name)
    for p in problems:
        print("check-events: " + p)
    print("check-events: %d events in the code, %d in the table, %d problems"
          % (len(code), len(doc), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

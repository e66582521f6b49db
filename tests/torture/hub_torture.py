#!/usr/bin/env python3
# Allocation-failure torture of the hub daemon: tt-tether-hub fails its Nth allocation while it answers a fixed series of API requests.
# SPDX-License-Identifier: MIT
"""Usage: hub_torture.py --bin BUILD_DIR [--time-budget S] [--budget K] [--only N,...]

BUILD_DIR holds tether-hub (to make the state once) and tt-tether-hub (the
hub built with tests/torture/alloc.h). Each run copies a fresh state, starts
tt-tether-hub with TETHER_FAIL_ALLOC=N, sends the same requests (site add,
patch, token create, query submit and read, audit, proxy to an offline site,
site remove), then checks that the hub still answers /healthz and that
SIGTERM stops it with exit 0 and no sanitizer report.

"Held" for a run: the daemon was not killed by a signal, printed no sanitizer
report (crash, use after free, leak at exit), and once it listened it kept
answering after the failed allocation. A failed allocation during start-up
may make the hub refuse to start (exit 1): that is allowed, but not a crash
or a leak. Answers of 500 or 503 and closed connections are allowed.
Exit status: 0 held for every N tried, 1 otherwise, 77 no tt-tether-hub.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torture import SAN_RE, choose, where  # noqa: E402

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Api:
    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.silent = 0  # calls in a row with no answer at all
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE

    def call(self, method, path, body=None, auth=True):
        """(status, parsed JSON or None); status 0 when there was no answer.
        After two calls in a row without one, the hub is taken to have stopped
        answering and the rest of the scenario is skipped (fast)."""
        if self.silent >= 2 and path != "/healthz":
            return 0, None
        st, j = self._call(method, path, body, auth)
        self.silent = self.silent + 1 if st == 0 else 0
        return st, j

    def _call(self, method, path, body, auth):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=5)
        try:
            hdrs = {}
            if auth:
                hdrs["Authorization"] = "Bearer " + self.token
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw)
            except ValueError:
                return r.status, None
        except (OSError, http.client.HTTPException):
            return 0, None
        finally:
            c.close()


def scenario(api):
    api.call("GET", "/healthz", auth=False)
    api.call("GET", "/v1/sites")
    api.call("POST", "/v1/sites", {"name": "s1", "labels": {"zone": "a"}})
    api.call("PATCH", "/v1/sites/s1", {"labels": {"tier": "b"}})
    api.call("GET", "/v1/sites/s1")
    api.call("POST", "/v1/tokens", {"name": "u1", "role": "user", "sites": ["s1"]})
    api.call("GET", "/v1/tokens")
    st, q = api.call("POST", "/v1/queries", {"sites": ["s1"], "service": "web", "path": "/x",
                                             "headers": {"x-a": "1"}, "body": "hello"})
    if st == 201 and isinstance(q, dict) and isinstance(q.get("id"), str):
        api.call("GET", "/v1/queries/%s" % q["id"])
    api.call("GET", "/v1/queries")
    api.call("GET", "/v1/audit")
    api.call("GET", "/v1/sites/s1/services/web/x")
    api.call("GET", "/metrics")
    api.call("DELETE", "/v1/tokens/u1")
    api.call("DELETE", "/v1/sites/s1")


def wait_listening(p, log_path, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as f:
            if " listening " in f.read():
                return True
        if p.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def one_run(a, template, token, work, n, count_file=None):
    """None if it held, else (kind, where, log text)."""
    state = os.path.join(work, "state")
    shutil.copytree(template, state)
    port = free_port()
    log_path = os.path.join(work, "hub.log")
    env = dict(os.environ)
    env["TETHER_NO_TUNE"] = "1"
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if count_file:
        env["TETHER_ALLOC_COUNT_FILE"] = count_file
    else:
        env["TETHER_FAIL_ALLOC"] = str(n)
    with open(log_path, "wb") as log:
        p = subprocess.Popen([os.path.join(a.bin, "tt-tether-hub"), "run", "--state", state,
                              "--listen", "127.0.0.1:%d" % port], stdout=log, stderr=log,
                             env=env)
    started = wait_listening(p, log_path)
    problem = None
    if started:
        api = Api(port, token)
        scenario(api)
        if p.poll() is not None:
            problem = "died while serving"
        else:
            ok = False
            for _ in range(3):
                st, _ = api.call("GET", "/healthz", auth=False)
                if st == 200:
                    ok = True
                    break
                time.sleep(0.5)
            if not ok:
                problem = "stopped answering"
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
        problem = problem or "did not stop on SIGTERM"
    with open(log_path, errors="replace") as f:
        text = f.read()
    shutil.rmtree(state, ignore_errors=True)
    m = SAN_RE.search(text)
    if m:
        side, loc = where(text[m.start():], SRC)
        return (m.group(1) or "UBSan") + ("" if started else " at start-up"), loc, text
    if rc is not None and rc < 0:
        return "signal %d" % -rc, where(text, SRC)[1], text
    if problem:
        return problem, "", text
    if started and rc != 0:
        return "exit %d after SIGTERM" % rc, "", text
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--budget", type=int, default=0)
    ap.add_argument("--time-budget", type=float, default=0)
    ap.add_argument("--only", default="")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    if not os.access(os.path.join(a.bin, "tt-tether-hub"), os.X_OK):
        print("SKIP: no tt-tether-hub in %s (configure with -DTETHER_TORTURE=ON)" % a.bin)
        return 77

    with tempfile.TemporaryDirectory(prefix="tether-hub-torture-") as tmp:
        template = os.path.join(tmp, "template")
        r = subprocess.run([os.path.join(a.bin, "tether-hub"), "init", "--state", template,
                            "--name", "127.0.0.1"], capture_output=True,
                           env=dict(os.environ, TETHER_NO_TUNE="1"))
        if r.returncode != 0:
            print("tether-hub init failed: %s" % r.stderr.decode(errors="replace"))
            return 1
        with open(os.path.join(template, "admin.token")) as f:
            token = f.read().strip()

        count_file = os.path.join(tmp, "count")
        work = os.path.join(tmp, "count-run")
        os.mkdir(work)
        t0 = time.monotonic()
        found = one_run(a, template, token, work, 0, count_file)
        secs = time.monotonic() - t0
        if found is not None:
            print("the run without a failed allocation does not hold: %s %s\n%s" % (
                found[0], found[1], found[2][-4000:]))
            return 1
        with open(count_file) as f:
            total = int(f.read().strip())
        ns = choose(total, a.budget, a.only)
        print("tt-tether-hub: %d allocations in one run of the scenario (%.1f s); trying up to "
              "%d%s" % (total, secs, len(ns), " (at most %.0f s)" % a.time_budget
                        if a.time_budget > 0 and not a.only else ""), flush=True)
        groups = {}
        tried = 0
        t0 = time.monotonic()
        for n in ns:
            if a.time_budget > 0 and not a.only and time.monotonic() - t0 > a.time_budget:
                break
            work = os.path.join(tmp, "n%d" % n)
            os.mkdir(work)
            found = one_run(a, template, token, work, n)
            tried += 1
            shutil.rmtree(work, ignore_errors=True)
            if found is None:
                continue
            g = groups.setdefault(found[:2], [])
            g.append(n)
            if len(g) == 1 and a.verbose:
                print("----- %s %s at N=%d -----\n%s" % (found[0], found[1], n,
                                                          found[2][-8000:]), flush=True)
    for (kind, loc), n_list in sorted(groups.items(), key=lambda kv: kv[1][0]):
        print("  FINDING %-28s %-50s N=%s%s (%d N)" % (kind, loc, n_list[0],
                                                       "..." if len(n_list) > 1 else "",
                                                       len(n_list)))
    print("tt-tether-hub: %d allocations, %d tried in %.0f s, %d finding(s)" % (
        total, tried, time.monotonic() - t0, len(groups)), flush=True)
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main())

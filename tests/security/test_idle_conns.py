#!/usr/bin/env python3
# Attack: thousands of user connections that never send a request; deadlines, per-address cap, fd reserve, memory.
# SPDX-License-Identifier: MIT
"""Held means:
- Phase A, one source address: connections that send nothing, half an
  HTTP/1.1 head, only the HTTP/2 preface, or a head trickled byte by byte are
  closed by request_head_timeout (a 408 for a begun HTTP/1.1 head, a GOAWAY
  for HTTP/2); keep-alive connections (HTTP/1.1 and HTTP/2) are closed by
  idle_timeout after their last response, not before; never more than
  max_user_conns_per_ip of them are open at once; a user at another address
  is served meanwhile.
- Phase B, from 100 source addresses with long deadlines: the hub's
  descriptors (limit lowered with prlimit) fill up to limit - fd_reserve and
  further users are refused, yet the site, whose agent is killed and started
  again during the attack, gets its tunnel back through the reserve; a user
  connected before the attack is served throughout; once the attackers let
  go, a new user is served and the hub's RSS is back near its level before
  the attack (not checked under ASan, whose allocator keeps freed memory).

`--full` runs the issue's real case instead (idle_flood_full.sh): 20,000
idle connections from several client processes, the hub with its normal
limits, and prints the hub's RSS before, during and after."""
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Fatal, Harness  # noqa: E402
import idleconn as ic  # noqa: E402
from h2raw import split_frames  # noqa: E402

HEAD_T = 2.0  # request_head_timeout, phase A
IDLE_T = 4.0  # idle_timeout, phase A
CAP = 40  # max_user_conns_per_ip
RESERVE = 64  # fd_reserve
NOFILE = 640  # the hub's descriptor limit (prlimit)
SLACK = 6.0  # scheduling slack on a busy machine, added to every deadline


def h2_frames(data):
    """(type, flags, stream) of every whole frame after the server's bytes
    start (the server sends no preface)."""
    return [f[:3] for f in split_frames(data)[0]]


def keepalive_h2(port, src):
    """An HTTP/2 connection that made one request (GET /healthz) and got its
    answer; returns (Conn, answered) with the Conn in non-blocking mode."""
    c = ic.open_conn(port, "preface", src=src)
    if c is None:
        return None, False
    c.sock.setblocking(True)
    c.sock.settimeout(5)
    c.sock.sendall(ic.h2_get("/healthz"))
    got, answered = b"", False
    try:
        while not answered:
            d = c.sock.recv(65536)
            if not d:
                break
            got += d
            answered = any(t == 0 and f & 1 and s == 1 for t, f, s in h2_frames(got)) or \
                any(t == 1 and f & 1 and s == 1 for t, f, s in h2_frames(got))
    except OSError:
        pass
    c.sock.setblocking(False)
    c.opened = time.monotonic()
    return c, answered


def phase_a(h, hub, token):
    port = hub.port
    w = ic.Watcher()
    refused, max_open = 0, 0
    kinds = ic.KINDS
    n_each = 30
    for i in range(n_each * len(kinds)):
        c = ic.open_conn(port, kinds[i % len(kinds)], src="127.0.0.2")
        if c is None:
            refused += 1
        else:
            w.add(c)
        w.poll(0)
        max_open = max(max_open, len(w.open))
    h.info("phase A: %d connections from 127.0.0.2, %d refused, at most %d open at once"
           % (n_each * len(kinds), refused, max_open))
    h.check(max_open <= CAP, "never more than max_user_conns_per_ip=%d open from one address "
            "(saw %d)" % (CAP, max_open))
    h.check(max_open >= CAP // 2 and refused > 0,
            "... the cap was reached and connections over it were refused (%d)" % refused)
    h.check(hub.proc.find(r"\buser_conn_cap\b.*remote=127\.0\.0\.2:") is not None,
            "... and the hub logged user_conn_cap")

    st, body = ic.https_get(port, "/v1/sites/s1/services/web/echo?during=a", token,
                            src="127.0.0.3")
    h.check(st == 200, "a user at another address is served during the attack", (st, body[:200]))

    # Keep-alive connections that made one request each.
    ka1 = ic.KeepAlive.open(port, src="127.0.0.4")
    st, _ = ka1.get("/healthz")
    h.check(st == 200, "HTTP/1.1 keep-alive connection answered", st)
    ka1c = ic.Conn("keepalive-h1", ka1.sock, "127.0.0.4", time.monotonic())
    ka1.sock.setblocking(False)
    w.add(ka1c)
    ka2c, answered = keepalive_h2(port, "127.0.0.4")
    h.check(ka2c is not None and answered, "HTTP/2 connection answered its request")
    if ka2c is not None:
        ka2c.kind = "keepalive-h2"
        w.add(ka2c)

    w.run(max(HEAD_T, IDLE_T) + 2 * SLACK, trickle_every=0.2)
    still = len(w.open)
    h.check(still == 0, "every idle connection was closed by the hub (%d still open)" % still)
    w.close_all()
    for kind in list(kinds) + ["keepalive-h1", "keepalive-h2"]:
        mine = [c for c in w.done if c.kind == kind]
        if not mine:
            h.check(False, "%s: connections of this kind were closed" % kind)
            continue
        limit = IDLE_T if kind.startswith("keepalive") else HEAD_T
        ages = sorted(c.closed - c.opened for c in mine)
        h.check(ages[0] >= 0.8 * limit and ages[-1] <= limit + SLACK,
                "%s (%d): closed after %.1f..%.1f s, deadline %.1f s"
                % (kind, len(mine), ages[0], ages[-1], limit))
    half = [c for c in w.done if c.kind in ("half", "trickle")]
    h.check(half and all(c.got.startswith(b"HTTP/1.1 408 ") for c in half),
            "a begun HTTP/1.1 head gets 408 Request Timeout",
            [c.got[:40] for c in half if not c.got.startswith(b"HTTP/1.1 408 ")][:3])
    pre = [c for c in w.done if c.kind in ("preface", "keepalive-h2")]
    h.check(pre and all(any(t == 7 for t, _, _ in h2_frames(c.got)) for c in pre),
            "HTTP/2 connections get a GOAWAY before the close")


class Attacker(threading.Thread):
    """Keeps opening idle connections from 100 addresses until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = False
        self.conns = []
        self.attempts = 0
        self.refused = 0

    def run(self):
        i = 0
        while not self.stop:
            src = "127.0.1.%d" % (1 + i % 100)
            kind = ("nothing", "preface", "half")[i % 3]
            i += 1
            c = ic.open_conn(self.port, kind, src=src, timeout=3)
            self.attempts += 1
            if c is None:
                self.refused += 1
                if self.refused > 200:
                    time.sleep(0.01)  # the pool is full: keep knocking, not spinning
            else:
                self.conns.append(c)

    def release(self):
        self.stop = True
        self.join(10)
        for c in self.conns:
            try:
                c.sock.close()
            except OSError:
                pass


def phase_b(h, hub, site, svc, token):
    port = hub.port
    hub.reload(request_head_timeout=60, idle_timeout=60)

    early = ic.KeepAlive.open(port, src="127.0.0.5")
    st, _ = early.get("/v1/sites/s1/services/web/echo?before=b", token)
    h.check(st == 200, "a user connected before phase B is served", st)
    for _ in range(3):
        ic.https_get(port, "/v1/sites/s1/services/web/echo?warm=1", token, src="127.0.0.6")
    time.sleep(1.5)
    rss0 = hub.proc.rss_kib()
    fds0 = ic.hub_fds(hub.proc.pid)
    asan = ic.has_asan(hub.proc.pid)

    att = Attacker(port)
    att.start()
    peak_fds, peak_rss = fds0, rss0
    full_at = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 40:
        time.sleep(0.2)
        fds = ic.hub_fds(hub.proc.pid)
        peak_fds = max(peak_fds, fds)
        peak_rss = max(peak_rss, hub.proc.rss_kib() or 0)
        if att.refused >= 300 and fds >= NOFILE - RESERVE - 8:
            full_at = time.monotonic()
            break
    h.info("phase B: %d attempts, %d refused, hub fds %d -> %d (limit %d, reserve %d)"
           % (att.attempts, att.refused, fds0, peak_fds, NOFILE, RESERVE))
    h.check(full_at is not None, "the attack filled the hub's descriptors up to the reserve "
            "(%d of %d)" % (peak_fds, NOFILE))
    h.check(peak_fds <= NOFILE - RESERVE // 2,
            "... and user connections never took the reserve (peak %d)" % peak_fds)
    h.check(hub.proc.find(r"\bfd_reserve\b.*refused=") is not None,
            "... new users were refused with fd_reserve logged")
    st, _ = ic.https_get(port, "/healthz", src="127.0.0.7", timeout=5)
    h.check(st == 0, "a new user is refused while the descriptors are full (expected)", st)

    # The site's agent restarts during the attack.
    mark = hub.proc.mark()
    site.proc.kill9()
    site.start({"web": svc.url}, wait=False)
    m = hub.proc.wait_log(r"\bsite_connected\b.*\bsite=s1\b", 20, since=mark, fatal=False)
    h.check(m is not None, "the restarted site gets its tunnel back during the attack")
    ok = 0
    for _ in range(30):
        st, _ = early.get("/v1/sites/s1/services/web/echo?during=b", token)
        if st == 200:
            ok += 1
            break
        time.sleep(0.5)
    h.check(ok == 1, "the user connected before the attack is served through the new tunnel")
    peak_rss = max(peak_rss, hub.proc.rss_kib() or 0)
    att_attempts = att.attempts
    gone = hub.proc.mark()
    att.release()

    # Attackers gone: descriptors and memory come back (a trim follows the
    # fall, at most one per 10 s: wait for the one with few still open).
    Harness.wait_until(lambda: ic.hub_fds(hub.proc.pid) <= fds0 + 4, 20)
    hub.proc.wait_log(r"\bheap_trimmed conns=\d{1,2} ", 15, since=gone, fatal=False)
    time.sleep(0.5)
    fds1 = ic.hub_fds(hub.proc.pid)
    rss1 = hub.proc.rss_kib()
    h.info("phase B: %d attempts; hub RSS %d KiB before, %d KiB at peak, %d KiB after"
           % (att_attempts, rss0, peak_rss, rss1))
    h.check(fds1 <= fds0 + 4, "the hub's descriptors are back (%d, before %d)" % (fds1, fds0))
    st, _ = ic.https_get(port, "/v1/sites/s1/services/web/echo?after=b", token, src="127.0.0.7")
    h.check(st == 200, "a new user is served once the attackers let go", st)
    st, body = ic.https_get(port, "/metrics", token, src="127.0.0.7")
    counts = dict(re.findall(r'^(tether_users_\w+(?:\{[^}]*\})?) (\d+)$', body.decode(), re.M)) \
        if st == 200 else {}
    h.check(all(int(counts.get(k, 0)) > 0 for k in (
        'tether_users_refused_total{reason="per_address"}',
        'tether_users_refused_total{reason="fd_reserve"}', "tether_users_timed_out_total")),
        "/metrics counts the refused and timed-out users", counts)
    if asan:
        h.info("ASan build: RSS not checked")
    else:
        grew = peak_rss - rss0
        h.check(grew > 2048, "the attack cost the hub memory (%d KiB)" % grew)
        h.check(rss1 - rss0 <= max(grew // 4, 2048),
                "RSS after the attack is near its level before (%d KiB vs %d KiB, peak %d KiB)"
                % (rss1, rss0, peak_rss))
    early.close()


def main(h):
    if "--full" in sys.argv:
        return full(h)
    ic.raise_nofile()
    conf = {"request_head_timeout": HEAD_T, "idle_timeout": IDLE_T,
            "max_user_conns_per_ip": CAP, "fd_reserve": RESERVE,
            "trim_after_closes": 100,
            "handshake_timeout": 3}
    hub = ic.start_hub(h, conf, NOFILE)
    site, svc = h.add_site(hub, "s1")
    phase_a(h, hub, hub.token)
    phase_b(h, hub, site, svc, hub.token)


# --- the real 20,000-connection run (idle_flood_full.sh) -------------------

FULL_CONNS = 20000
FULL_PROCS = 5


def full_worker(port, first_ip, n, ready_path, release_path):
    """Child process: n idle connections ("nothing" kind), 200 per source
    address from address number first_ip on (127.0.2.1, ...); writes how
    many it holds to ready_path, then holds them until release_path exists."""
    ic.raise_nofile()
    conns = []
    for i in range(n):
        k = first_ip + i // 200
        c = ic.open_conn(port, "nothing", src="127.0.%d.%d" % (2 + k // 250, 1 + k % 250))
        if c is not None:
            conns.append(c)
    with open(ready_path + ".tmp", "w") as f:
        f.write(str(len(conns)))
    os.rename(ready_path + ".tmp", ready_path)
    t0 = time.monotonic()
    while not os.path.exists(release_path) and time.monotonic() - t0 < 900:
        time.sleep(0.5)
    for c in conns:
        c.sock.close()


def full(h):
    """The issue's case at full size. The hub runs with its defaults except
    longer deadlines (so the connections stay while they are counted) and a
    per-address cap of 200 (the clients use 100 addresses)."""
    import subprocess
    ic.raise_nofile()
    conf = {"request_head_timeout": 900, "idle_timeout": 900, "max_user_conns_per_ip": 200,
            "handshake_timeout": 60}
    hub = ic.start_hub(h, conf, None)
    site, svc = h.add_site(hub, "s1")
    for _ in range(20):
        ic.https_get(hub.port, "/v1/sites/s1/services/web/echo?warm=1", hub.token)
    time.sleep(2)
    rss0 = hub.proc.rss_kib()
    fds0 = ic.hub_fds(hub.proc.pid)
    per = FULL_CONNS // FULL_PROCS
    release = h.path("release")
    kids = []
    t0 = time.monotonic()
    for k in range(FULL_PROCS):
        ready = h.path("ready.%d" % k)
        kids.append((ready, subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", str(hub.port),
             str(k * per // 200), str(per), ready, release])))
    peak_rss, peak_fds = rss0, fds0
    while not all(os.path.exists(r) for r, _ in kids):
        time.sleep(1)
        peak_rss = max(peak_rss, hub.proc.rss_kib() or 0)
        peak_fds = max(peak_fds, ic.hub_fds(hub.proc.pid))
        if time.monotonic() - t0 > 900:
            raise Fatal("workers did not finish opening within 15 min")
    took = time.monotonic() - t0
    held = sum(int(open(r).read() or 0) for r, _ in kids)
    time.sleep(2)
    during = hub.proc.rss_kib()
    fds = ic.hub_fds(hub.proc.pid)
    peak_rss = max(peak_rss, during)
    st, _ = ic.https_get(hub.port, "/healthz", src="127.0.0.3", timeout=5)
    # The site's agent restarts while an attacker keeps knocking for any
    # descriptor that comes free (the dead agent's tunnel frees one).
    att = Attacker(hub.port)
    att.start()
    time.sleep(1)
    mark = hub.proc.mark()
    site.proc.kill9()
    site.start({"web": svc.url}, wait=False)
    back = hub.proc.wait_log(r"\bsite_connected\b.*\bsite=s1\b", 30, since=mark, fatal=False)
    gone = hub.proc.mark()
    att.release()
    with open(release, "w"):
        pass
    for _, p in kids:
        p.wait(300)
    Harness.wait_until(lambda: ic.hub_fds(hub.proc.pid) <= fds0 + 4, 120)
    hub.proc.wait_log(r"\bheap_trimmed conns=\d{1,2} ", 15, since=gone, fatal=False)
    time.sleep(1)
    after = hub.proc.rss_kib()
    fds1 = ic.hub_fds(hub.proc.pid)
    print("FULL: clients opened %d TLS connections from %d processes in %.0f s; the hub held %d "
          "of them (its fds %d -> %d); a new user meanwhile: status %s"
          % (held, FULL_PROCS, took, fds - fds0, fds0, fds, st or "refused"))
    print("FULL: hub RSS before %.1f MB, during %.1f MB (peak %.1f MB), after %.1f MB (fds %d)"
          % (rss0 / 1024, during / 1024, peak_rss / 1024, after / 1024, fds1))
    h.check(back is not None, "a restarted site got its tunnel back while the hub was full")
    h.check(fds - fds0 >= 15000, "the hub held the idle connections (%d)" % (fds - fds0))
    h.check(after - rss0 <= max((peak_rss - rss0) // 10, 4096),
            "RSS after (%.1f MB) is near before (%.1f MB)" % (after / 1024, rss0 / 1024))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    full_worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    sys.exit(0)

if __name__ == "__main__":
    Harness.main("security_idle_conns", main, tools=("curl", "prlimit"))

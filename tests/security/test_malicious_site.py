#!/usr/bin/env python3
# Attack suite: a malicious site, built from a real site's own key, against the hub's tunnel side.
# SPDX-License-Identifier: MIT
"""A malicious site.

Site "evil" is enrolled with `tether-site enroll` like any site; then this
script, not tether-site, dials the hub with evil's own certificate and key
(TLS 1.3, ALPN tether/1) and plays the HTTP/2 server of the tunnel, frame by
frame. Cases, each on a fresh tunnel connection of evil:

  hello lie        the hello claims to be site "good" and offers good's and
                   other services
  hello never ends standby connections (the site's key, a second time) whose
                   hello answer never ends, while they answer PINGs
  huge header      a response head of 70 KB (over CONTINUATION frames), and
                   one of 150 fields
  bad head         :status "000", "099", "600", "2x0", "1000"; a header value
                   with CR LF (response splitting); a Transfer-Encoding
                   header; 1,000 interim (103) heads and never a final one
  resets           RST_STREAM on every stream (INTERNAL_ERROR, REFUSED)
  data flood       DATA beyond the stream and connection windows (200 MB sent
                   without waiting for WINDOW_UPDATE) to a user who reads slowly
  never reads      answers the hello, then never reads its socket again
                   while users send it requests and a 32 MiB upload
  zero window      INITIAL_WINDOW_SIZE 0 and never a WINDOW_UPDATE, while a
                   user uploads 32 MiB
  no streams       MAX_CONCURRENT_STREAMS 0 while 1,000 requests with 12 KB
                   heads wait for it
  after goaway     GOAWAY(last stream 0), then a response on a refused stream;
                   GOAWAY while a stream is open, then a new user request
  announce flood   30,000 "services-changed" lines on GET /.tether/events;
                   and a 404 there (an older agent): never asked again
  push             a PUSH_PROMISE (push is disabled)
  invalid frames   WINDOW_UPDATE of 0, an oversized frame, HEADERS on a
                   server-side stream id, a bad SETTINGS value; an unknown
                   frame type (must be ignored)

"Held" means: the hub resets the stream or closes the tunnel (the worse the
fault, the wider the cut; an unknown frame type cuts nothing); the user gets
a clean JSON error (502 bad_gateway, 503 site_offline, or 504
gateway_timeout), or a broken transfer (never a response that looks complete
but is not); nothing evil sends reaches another site's users; the hub's RSS
grows by at most RSS_LIMIT_MIB; and throughout, another user fetches 256 KiB
from site "good" (a real tether-site) over HTTP/2 and HTTP/1.1 within
max(10 x baseline, baseline + 5 s) of the baseline measured in this run. The
hub is alive at the end and exits 0 on SIGTERM.
"""

import json
import os
import re
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2kit as k  # noqa: E402
from h2kit import Bystanders, Fatal, Harness, RssWatch, tls_connect  # noqa: E402


EVIL, GOOD = "evil", "good"
RSS_LIMIT_MIB = 64
REQUEST_TIMEOUT_S = 3
PING_INTERVAL_S = 2


class Evil:
    """One tunnel connection of the malicious site. serve() runs in a thread:
    it answers the hub's hello and PINGs and hands every other request to
    on_request(evil, sid, headers). All writes hold wlock (one HPACK encoder
    for the connection)."""

    def __init__(self, h, hub, state_dir, hello=None, on_request=None, window=None,
                 max_streams=256, hello_ends=True, on_events=None):
        self.h, self.hub = h, hub
        s = tls_connect(hub.port, alpn=("tether/1",), cert=os.path.join(state_dir, "site.crt"),
                        key=os.path.join(state_dir, "site.key"))
        if s.selected_alpn_protocol() != "tether/1":
            raise Fatal("hub did not select tether/1 for evil (got %r)" %
                        s.selected_alpn_protocol())
        self.c = k.FrameConn(s)
        self.wlock = threading.Lock()
        self.hello = hello or {"site": EVIL, "agent_version": "0.1.0", "services": ["web"]}
        self.on_request = on_request
        self.hello_ends = hello_ends
        self.on_events = on_events  # GET /.tether/events: None = 404, as older agents
        self.hellos = 0
        self.events_asked = 0
        self.requests = []  # (sid, headers)
        self.read_paused = threading.Event()
        self.stopped = False
        self.error = None
        self.workers = []
        pre = self.c._read_exact(len(k.PREFACE))
        if pre != k.PREFACE:
            raise Fatal("hub sent %r, not the HTTP/2 client preface" % pre)
        pairs = [(k.SETTINGS_MAX_CONCURRENT_STREAMS, max_streams)]
        if window is not None:
            pairs.append((k.SETTINGS_INITIAL_WINDOW_SIZE, window))
        self.send(k.settings(pairs))
        self.th = threading.Thread(target=self.serve, daemon=True)
        self.th.start()

    def send(self, *chunks):
        with self.wlock:
            return self.c.send(*chunks)

    def ack(self, data):
        """An ACK, skipped while a flood holds the socket: the reader must
        never wait for a writer, or it stops seeing what the hub sends."""
        if self.wlock.acquire(timeout=0.5):
            try:
                self.c.send(data)
            finally:
                self.wlock.release()

    def respond(self, sid, hdrs, body=None, end=True):
        """HEADERS (and one DATA when body is given)."""
        with self.wlock:
            out = [k.frame(k.HEADERS, k.END_HEADERS | (k.END_STREAM if end and body is None
                                                      else 0), sid, self.c.block(hdrs))]
            if body is not None:
                out.append(k.frame(k.DATA, k.END_STREAM if end else 0, sid, body))
            return self.c.send(*out)

    def serve(self):
        c = self.c
        hblock = {}
        try:
            while not self.stopped:
                if self.read_paused.is_set():
                    time.sleep(0.05)
                    continue
                f = c.read_frame()
                c._record(f)
                ftype, flags, sid, payload = f
                if ftype == k.SETTINGS and not flags & k.ACK:
                    self.ack(k.settings(ack=True))
                elif ftype == k.PING and not flags & k.ACK:
                    self.ack(k.frame(k.PING, k.ACK, 0, payload))
                elif ftype in (k.HEADERS, k.CONTINUATION):
                    if ftype == k.HEADERS:
                        p = payload
                        pad = 0
                        if flags & k.PADDED:
                            pad, p = p[0], p[1:]
                        if flags & k.PRIO:
                            p = p[5:]
                        hblock[sid] = p[:len(p) - pad]
                    else:
                        hblock[sid] = hblock.get(sid, b"") + payload
                    if flags & k.END_HEADERS:
                        hdrs = dict((a.decode() if isinstance(a, bytes) else a,
                                     b.decode() if isinstance(b, bytes) else b)
                                    for a, b in c.dec.decode(hblock.pop(sid)))
                        self._request(sid, hdrs)
        except (EOFError, OSError, ValueError) as e:
            c.close_how = type(e).__name__
        except Exception as e:  # a bug in a case: reported by the test
            self.error = "%s: %s" % (type(e).__name__, e)
        with c.lock:
            if c.closed_at is None:
                c.closed_at = time.monotonic()
            c.cond.notify_all()

    def _request(self, sid, hdrs):
        if hdrs.get(":path") == "/.tether/hello" and "tether-service" not in hdrs:
            self.hellos += 1
            self.respond(sid, [(":status", "200"), ("content-type", "application/json")],
                         json.dumps(self.hello).encode(), end=self.hello_ends)
            return
        if hdrs.get(":path") == "/.tether/events" and "tether-service" not in hdrs:
            self.events_asked += 1
            if self.on_events is not None:
                self.spawn(lambda: self.on_events(self, sid))
            else:  # as an agent that never announces (older versions): 404
                self.respond(sid, [(":status", "404")], b"")
            return
        with self.c.lock:
            self.requests.append((sid, hdrs))
            self.c.cond.notify_all()
        if self.on_request is not None:
            self.on_request(self, sid, hdrs)

    def wait_request(self, n=1, timeout=10):
        return self.c.wait_for(lambda c: len(self.requests) >= n, timeout)

    def spawn(self, fn):
        """A helper thread writing on this connection; close() joins it."""
        t = threading.Thread(target=fn, daemon=True)
        self.workers.append(t)
        t.start()

    def close(self):
        # Shut down first and join the writers, then close: a writer still
        # in sendall() on a closed descriptor number would write into the
        # next connection that gets the same number.
        self.stopped = True
        try:
            with self.c.iolock:
                self.c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for t in self.workers + [self.th]:
            t.join(10)
        self.c.close()


def main(h):
    k.need_libs()
    k.quiet_asan_quarantine(h)
    hub = h.hub()
    hub.init()
    hub.set_conf(request_timeout=REQUEST_TIMEOUT_S, ping_interval=PING_INTERVAL_S)
    hub.start()
    site_good, svc_good = h.add_site(hub, GOOD)
    tok = hub.site_add(EVIL)
    evil_site = h.site(EVIL, hub, dirname="site-evil-state")
    evil_site.enroll(tok)
    alice = k.make_token(hub, "alice", "--role", "user", "--sites", "*")
    by = Bystanders(h, hub, alice, (GOOD,))
    by.baseline()

    def connect(**kw):
        mark = hub.proc.mark()
        ev = Evil(h, hub, evil_site.dir, **kw)
        m = hub.proc.wait_log(r"\bsite_hello site=%s\b" % EVIL, 10, since=mark, fatal=False)
        if m is None:
            raise Fatal("the hub did not take evil's hello")
        return ev

    def user(path, method=None, http="1.1", **kw):
        """A user's request to evil, in a thread; .result is the CurlResult."""
        box = {}

        def run():
            box["r"] = hub.proxy(EVIL, "web", path, token=alice, http=http, method=method, **kw)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.box = box
        return t

    def result(t, timeout=40):
        t.join(timeout)
        return t.box.get("r")

    def clean_error(r, statuses=(502, 503, 504)):
        if r is None or r.status not in statuses:
            return False
        d = r.json() or {}
        return d.get("error") in ("bad_gateway", "site_offline", "gateway_timeout")

    rss0 = [hub.proc.rss_kib() or 0]
    watch = RssWatch(hub.proc)
    watch.start()

    def rss_check(name):
        peak = watch.peak
        grow = (peak - rss0[0]) / 1024.0
        h.check(grow <= RSS_LIMIT_MIB and hub.proc.alive(),
                "%s: hub alive, RSS grew %.1f MiB (peak %d KiB), at most %d" % (
                    name, grow, peak, RSS_LIMIT_MIB))

    # --- hello lie -------------------------------------------------------------
    ev = connect(hello={"site": GOOD, "agent_version": "0.1.0",
                        "services": ["web", "admin", "db"]},
                 on_request=lambda e, sid, hd: e.respond(sid, [(":status", "200")], b"evil"))
    sites = hub.sites()
    h.check(sites.get(GOOD, {}).get("services") == ["web"] and sites[GOOD].get("online"),
            "hello lie: site good keeps its own services and stays online",
            sites.get(GOOD))
    h.check(sorted(sites.get(EVIL, {}).get("services") or []) == ["admin", "db", "web"],
            "hello lie: the claimed services are recorded for evil only", sites.get(EVIL))
    r = hub.proxy(GOOD, "web", "/count", token=alice)
    h.check(r.status == 200 and (r.json() or {}).get("site") == GOOD,
            "hello lie: a request for site good reaches the real site good", r)
    r = hub.proxy(EVIL, "web", "/x", token=alice)
    h.check(r.status == 200 and r.body == b"evil" and len(ev.requests) == 1,
            "hello lie: a request for evil reaches evil (routing follows the key)", r)
    by.check("hello lie")
    ev.close()

    # --- standby connections whose hello never ends --------------------------
    # A second connection with the site's key waits on standby until its
    # hello answer ends; one whose answer never ends (it answers PINGs, so it
    # is not silent) must not stay forever: a stolen key could otherwise
    # hold any number of connections (and the descriptors kept for sites).
    live = connect(on_request=lambda e, sid, hd: e.respond(sid, [(":status", "200")],
                                                           b"live"))
    stuck = [Evil(h, hub, evil_site.dir, hello_ends=False) for _ in range(5)]
    t0 = time.monotonic()
    closed = [e.c.wait_closed(4 * PING_INTERVAL_S + 5) for e in stuck]
    h.check(all(closed), "hello never ends: the hub closes standby connections whose hello "
            "answer never ends (%d of 5 within %.1f s, ping_interval %d s)" % (
                sum(1 for c in closed if c), time.monotonic() - t0, PING_INTERVAL_S))
    r = hub.proxy(EVIL, "web", "/x", token=alice)
    h.check(r.status == 200 and r.body == b"live",
            "hello never ends: the site's working connection serves on", r)
    for e in stuck:
        e.close()
    live.close()

    # --- huge response header ----------------------------------------------------
    def huge_head(e, sid, hd):
        if hd.get(":path", "").startswith("/many"):
            e.respond(sid, [(":status", "200")] + [("x-f%d" % i, "v") for i in range(150)])
            return
        if not hd.get(":path", "").startswith("/huge"):
            e.respond(sid, [(":status", "200")], b"fine")
            return
        with e.wlock:
            blk = e.c.block([(":status", "200"), ("x-big1", "a" * 40000, True),
                             ("x-big2", "b" * 30000, True)])
            parts = [blk[i:i + 16000] for i in range(0, len(blk), 16000)]
            out = [k.frame(k.HEADERS, k.END_STREAM if len(parts) > 1 else
                           k.END_STREAM | k.END_HEADERS, sid, parts[0])]
            for j, p in enumerate(parts[1:]):
                out.append(k.frame(k.CONTINUATION, k.END_HEADERS if j == len(parts) - 2 else 0,
                                   sid, p))
            e.c.send(*out)

    ev = connect(on_request=huge_head)
    for http in ("1.1", "2"):
        r = hub.proxy(EVIL, "web", "/huge", token=alice, http=http)
        h.check(clean_error(r, (502,)), "huge header: a 70 KB response head gives the user a "
                "clean 502 (HTTP/%s)" % http, r)
        r = hub.proxy(EVIL, "web", "/many", token=alice, http=http)
        h.check(clean_error(r, (502,)), "huge header: 150 response fields give the user a "
                "clean 502 (HTTP/%s)" % http, r)
    r = hub.proxy(EVIL, "web", "/ok", token=alice)
    h.check(r.status == 200 and r.body == b"fine",
            "huge header: only the stream was reset, the tunnel still serves", r)
    by.check("huge header")
    rss_check("huge header")
    ev.close()

    # --- bad response heads ------------------------------------------------------
    bad = {
        "/s000": [(":status", "000")],
        "/s099": [(":status", "099")],
        "/s1000": [(":status", "1000")],
        "/s600": [(":status", "600")],
        "/s2x0": [(":status", "2x0")],
        "/crlf": [(":status", "200"), ("x-a", "1\r\nx-injected: 1")],
        "/te": [(":status", "200"), ("transfer-encoding", "chunked")],
    }

    def bad_head(e, sid, hd):
        p = hd.get(":path", "")
        if p == "/interim":
            with e.wlock:
                e.c.send(*[k.frame(k.HEADERS, k.END_HEADERS, sid, e.c.block([(":status", "103")]))
                           for _ in range(1000)])
            return
        e.respond(sid, bad.get(p, [(":status", "200")]), b"fine" if p not in bad else
                  b"0\r\n\r\nHTTP/1.1 200 OK\r\nx-injected: 1\r\n\r\n")

    ev = connect(on_request=bad_head)
    for path in sorted(bad) + ["/interim"]:
        for http in ("1.1", "2"):
            r = hub.proxy(EVIL, "web", path, token=alice, http=http)
            h.check(clean_error(r, (502,)) and "x-injected" not in r.headers,
                    "bad head %s: the user gets a clean 502 (HTTP/%s)" % (path, http), r)
    r = hub.proxy(EVIL, "web", "/ok", token=alice)
    h.check(r.status == 200 and r.body == b"fine",
            "bad head: only the streams were reset, the tunnel still serves", r)
    by.check("bad head")
    ev.close()

    # --- resets -----------------------------------------------------------------
    codes = {"/internal": k.INTERNAL_ERROR, "/refused": k.REFUSED_STREAM, "/cancel": k.CANCEL}
    ev = connect(on_request=lambda e, sid, hd: e.send(k.rst(sid, codes.get(hd[":path"], 2))))
    for path, want in (("/internal", 502), ("/refused", 503), ("/cancel", 502)):
        ts = [user(path, http=("2" if i % 2 else "1.1")) for i in range(10)]
        rs = [result(t) for t in ts]
        h.check(all(clean_error(r, (want,)) for r in rs),
                "resets %s: 10 users each get a clean %d" % (path, want),
                [r for r in rs if not clean_error(r, (want,))][:2])
    by.check("resets")
    ev.close()

    # --- DATA flood beyond the windows ------------------------------------------
    flood = {}

    def flood_data(e, sid, hd):
        def run():
            e.respond(sid, [(":status", "200")], end=False)
            chunk = k.frame(k.DATA, 0, sid, b"x" * 16384)
            sent = 0
            t0 = time.monotonic()
            while sent < 200 * 1024 * 1024 and not e.stopped:
                if not e.send(chunk * 16):
                    break
                sent += 16 * 16384
            flood.update(sent=sent, secs=time.monotonic() - t0)
        e.spawn(run)

    ev = connect(on_request=flood_data)
    mark = hub.proc.mark()
    t = user("/flood", extra=("--limit-rate", "200k"), timeout=20)
    ok = ev.c.wait_for(lambda c: c.closed_at is not None or c.goaway is not None or any(
        f[0] == k.RST_STREAM for f in c.frames), 30)
    by.check("data flood")
    r = result(t)
    for w in ev.workers:
        w.join(30)
    h.check(ok and (ev.c.goaway is not None or ev.c.find(k.RST_STREAM)),
            "data flood: the hub reset the stream or closed the tunnel (%s MB sent, GOAWAY %r, "
            "RST %r)" % ((flood.get("sent") or 0) >> 20, ev.c.goaway and ev.c.goaway[:2],
                         [struct.unpack(">I", f[3])[0] for f in ev.c.find(k.RST_STREAM)]))
    h.check(r is not None and (r.status in (502, 503) or r.rc != 0) and
            (r.size or 0) < 200 * 1024 * 1024,
            "data flood: the user sees an error or a broken transfer, not a complete answer", r)
    rss_check("data flood")
    ev.close()

    # --- never reads ------------------------------------------------------------
    ev = connect()
    ev.read_paused.set()
    time.sleep(0.2)
    up = os.path.join(h.tmp, "up.bin")
    with open(up, "wb") as f:
        f.write(os.urandom(1 << 20) * 32)
    t0 = time.monotonic()
    ts = [user("/get%d" % i, http=("2" if i % 2 else "1.1")) for i in range(8)]
    ts.append(user("/upload", method="POST", data_file=up))
    ts.append(user("/upload2", method="POST", data_file=up, http="2"))
    by.check("never reads")
    rs = [result(t) for t in ts]
    took = time.monotonic() - t0
    h.check(all(clean_error(r, (502, 503, 504)) for r in rs),
            "never reads: every user (GETs and 32 MiB uploads) gets a clean error within "
            "%.1f s (request_timeout %d s)" % (took, REQUEST_TIMEOUT_S),
            [r for r in rs if not clean_error(r)][:2])
    rss_check("never reads")
    ev.close()

    # --- zero window ------------------------------------------------------------
    ev = connect(window=0)
    ts = [user("/upload", method="POST", data_file=up),
          user("/upload2", method="POST", data_file=up, http="2")]
    by.check("zero window")
    rs = [result(t) for t in ts]
    h.check(all(clean_error(r, (504,)) for r in rs),
            "zero window: 32 MiB uploads to a site that never opens its window end in 504",
            [r for r in rs if not clean_error(r, (504,))][:2])
    got = sum(len(f[3]) for f in ev.c.find(k.DATA))
    h.check(got == 0, "zero window: the hub sent no DATA beyond the window (%d bytes)" % got)
    rss_check("zero window")
    ev.close()

    # --- no streams allowed -----------------------------------------------------
    # MAX_CONCURRENT_STREAMS 0: the hub's requests wait for a slot that never
    # comes, each until its 504. Three rounds of 1,000 requests with 12 KB
    # heads: once the first round has warmed the allocator, later rounds must
    # not grow the hub's RSS (12 MB a round if the abandoned ones were kept);
    # at most 1,024 may wait in all, the rest get 429 or 503 site_busy at once.
    ev = connect(max_streams=0)
    rss_rounds, all_statuses = [], []
    for rnd in range(3):
        conns = []
        for j in range(10):
            c = k.user_h2(hub.port)
            c.start_reader()
            hdrs = k.request_headers(hub, "/v1/sites/%s/services/web/q" % EVIL, alice) + [
                ("x-pad", "q" * 12000, True)]
            c.send(*[c.headers(1 + 2 * i, hdrs) for i in range(100)])
            conns.append(c)
        if rnd == 0:
            by.check("no streams")
        statuses = []
        for c in conns:
            c.wait_for(lambda c: sum(1 for f in c.frames if f[0] == k.RST_STREAM or (
                f[0] in (k.DATA, k.HEADERS) and f[1] & k.END_STREAM)) >= 100,
                REQUEST_TIMEOUT_S + 40)
            got = c.find(k.HEADERS)
            if len(got) < 100:  # say whether the connection still answers at all
                c.send(k.frame(k.PING, 0, 0, b"stalled?"))
                pong = c.wait_for(lambda c: any(f[0] == k.PING and f[1] & k.ACK
                                                for f in c.frames), 5)
                h.info("no streams: user connection %d got %d answers, PING answered %r, "
                       "frames %r" % (conns.index(c), len(got), bool(pong), c.counts))
            for f in got:
                statuses += [v for n_, v in c.decode(f[3], f[1]) if n_ == ":status"]
            c.close()
        all_statuses += statuses
        # One token sends them all: past its request caps (max_requests_per_token)
        # it gets 429 at once, past the tunnel's 1,024 everyone gets 503.
        h.check(len(statuses) == 1000 and set(statuses) <= {"429", "503", "504"} and
                "504" in statuses,
                "no streams, round %d: 1,000 requests end in 504 (waited), 429 or 503 "
                "(refused)" % (rnd + 1),
                "statuses: %r" % {v: statuses.count(v) for v in set(statuses)})
        time.sleep(0.3)
        rss_rounds.append(hub.proc.rss_kib() or 0)
    h.check(all_statuses.count("504") <= 1024,
            "no streams: at most 1,024 requests waited for the site (%d did)" %
            all_statuses.count("504"))
    # The normal build holds RSS to the KiB over identical rounds; ASan's
    # allocator alone moves it by about 4 MiB (CI: 42072, 46176, 46692 KiB;
    # here 47084, 43200, 43980), so a sanitized hub gets a looser bound, and
    # LeakSanitizer at exit covers what this cannot see there.
    slack_kib = 12 * 1024 if os.environ.get("TETHER_TEST_SANITIZED") == "1" else 4 * 1024
    h.check(rss_rounds[2] - rss_rounds[0] <= slack_kib,
            "no streams: the abandoned requests are not kept (RSS after each round %r KiB)" %
            rss_rounds)
    # When the site allows streams again, none of the abandoned requests arrive.
    ev.send(k.settings([(k.SETTINGS_MAX_CONCURRENT_STREAMS, 256)]))
    ev.on_request = lambda e, sid, hd: e.respond(sid, [(":status", "200")], b"fine")
    # (The hub first pops the 1,024 cancelled requests from its queue; on a
    # loaded machine that can outlast one request_timeout, so try twice.)
    for _ in range(2):
        r = hub.proxy(EVIL, "web", "/ok", token=alice)
        if r.status == 200:
            break
    time.sleep(0.5)
    h.check(r.status == 200 and {hd[":path"] for _, hd in ev.requests} == {"/ok"},
            "no streams: once allowed, only the new request reaches the site, none of the "
            "3,000 abandoned ones", (r, len(ev.requests)))
    rss_check("no streams")
    ev.close()

    # --- data after GOAWAY ------------------------------------------------------
    def after_goaway(e, sid, hd):
        e.send(k.goaway(0, k.NO_ERROR, b"bye"))
        e.respond(sid, [(":status", "200")], b"late data after goaway")

    ev = connect(on_request=after_goaway)
    mark = hub.proc.mark()
    r = hub.proxy(EVIL, "web", "/x", token=alice)
    h.check(clean_error(r, (502, 503)) and b"late data" not in (r.body or b""),
            "after goaway: the user gets a clean error, not the data sent after GOAWAY", r)
    m = hub.proc.wait_log(r"site_disconnected site=%s\b" % EVIL, 10, since=mark, fatal=False)
    h.check(m is not None, "after goaway: the hub closes the tunnel")
    by.check("after goaway")
    ev.close()

    # --- a request after GOAWAY, an older stream still open --------------------
    # The tunnel stays (stream /hold is still served) but takes no new stream:
    # the hub's next request to it cannot go, and must fail from its return
    # value inside the hub, not from a callback run before that returned.
    def goaway_hold(e, sid, hd):
        if hd.get(":path") == "/hold":
            e.send(k.goaway(sid, k.NO_ERROR, b"draining"), k.frame(k.PING, 0, 0, b"goaway!!"))

    ev = connect(on_request=goaway_hold)
    hold = user("/hold")
    seen = ev.c.wait_for(lambda c: any(f[0] == k.PING and f[1] & k.ACK and f[3] == b"goaway!!"
                                       for f in c.frames), 10)
    h.check(seen, "goaway, stream open: the hub took the GOAWAY (its PING ACK came back)")
    def proxied():
        m = re.search(rb"^tether_proxy_requests_total (\d+)$", hub.curl("/metrics").body or b"",
                      re.M)
        return int(m.group(1)) if m else None

    before = proxied()
    r = hub.proxy(EVIL, "web", "/after", token=alice)
    h.check(clean_error(r, (503,)) and hub.proc.alive(),
            "goaway, stream open: a new request gets 503, the hub is alive", r)
    after = proxied()
    h.check(before is not None and after == before,
            "goaway, stream open: the refused request is not counted as proxied (the stream "
            "open failed by its return value, not a callback inside it)", (before, after))
    h.check({hd[":path"] for _, hd in ev.requests} == {"/hold"},
            "goaway, stream open: the new request never reached the site",
            [hd[":path"] for _, hd in ev.requests])
    sid = [s for s, hd in ev.requests if hd[":path"] == "/hold"][0]
    ev.respond(sid, [(":status", "200")], b"held")
    r = result(hold)
    h.check(r is not None and r.status == 200 and r.body == b"held",
            "goaway, stream open: the older stream still completes", r)
    by.check("goaway, stream open")
    ev.close()

    # --- announcement flood ----------------------------------------------------
    # 30,000 "services-changed" lines and a 100 KB line without an end, within
    # the stream's window: the hub asks for the hello again a bounded number
    # of times (one in flight, one more after it), and since the answer is
    # the same, records nothing.
    def flood_events(e, sid):
        e.respond(sid, [(":status", "200")], end=False)
        lines = b"services-changed\n" * 30000
        for i in range(0, len(lines), 16000):
            e.send(k.frame(k.DATA, 0, sid, lines[i:i + 16000]))
        e.send(k.frame(k.DATA, 0, sid, b"x" * 16000), k.frame(k.DATA, 0, sid, b"y" * 16000))
        e.flood_done = True

    ev = connect(on_events=flood_events,
                 on_request=lambda e, sid, hd: e.respond(sid, [(":status", "200")], b"fine"))
    mark = hub.proc.mark()
    h.check(h.wait_until(lambda: getattr(ev, "flood_done", False), 15),
            "announce flood: evil sent its 30,000 lines")
    r = hub.proxy(EVIL, "web", "/x", token=alice)
    h.check(r.status == 200 and r.body == b"fine" and hub.proc.alive(),
            "announce flood: the hub is alive and still serves the tunnel", r)
    h.check(1 <= ev.hellos - 1 <= 200,
            "announce flood: the hub fetched the hello again a bounded number of times "
            "(%d for 30,000 lines)" % (ev.hellos - 1))
    h.check(not hub.proc.find(r"\bsite_services_changed\b", since=mark),
            "announce flood: an unchanged hello changes and records nothing")
    by.check("announce flood")
    rss_check("announce flood")
    ev.close()

    # --- an agent without /.tether/events (older versions answer 404) -----------
    ev = connect()

    def pings(c):
        return sum(1 for f in c.frames if f[0] == k.PING and not f[1] & k.ACK)

    h.check(ev.c.wait_for(lambda c: pings(c) >= 3, 20) and ev.events_asked == 1,
            "older agent: asked for /.tether/events once (404), not again over 3 ping ticks",
            ev.events_asked)
    ev.close()

    # --- PUSH_PROMISE -----------------------------------------------------------
    def push(e, sid, hd):
        with e.wlock:
            blk = e.c.block([(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                             (":path", "/pushed")])
            e.c.send(k.frame(k.PUSH_PROMISE, k.END_HEADERS, sid, struct.pack(">I", 2) + blk))
        e.respond(sid, [(":status", "200")], b"pushed")

    ev = connect(on_request=push)
    r = hub.proxy(EVIL, "web", "/x", token=alice)
    h.check(clean_error(r, (502, 503)),
            "push: a PUSH_PROMISE (push disabled) gives the user a clean error", r)
    h.check(ev.c.wait_closed(10) and (ev.c.goaway is None or ev.c.goaway[1] == k.PROTOCOL_ERROR),
            "push: the hub closes the tunnel (GOAWAY PROTOCOL_ERROR)", ev.c.goaway)
    by.check("push")
    ev.close()

    # --- invalid frames ---------------------------------------------------------
    invalid = {
        "window update 0": k.window_update(0, 0),
        "oversized frame": k.frame(k.DATA, 0, 1, b"z" * 20000),
        "headers on stream 2": None,  # built with the connection's encoder
        "bad settings": k.settings([(k.SETTINGS_INITIAL_WINDOW_SIZE, 0x80000000)]),
    }
    for name, raw in invalid.items():
        ev = connect()
        if raw is None:
            with ev.wlock:
                raw = k.frame(k.HEADERS, k.END_HEADERS, 2, ev.c.block(
                    [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                     (":path", "/")]))
        pending = user("/hang%s" % name.replace(" ", ""))
        ev.wait_request(1, 10)
        ev.send(raw)
        h.check(ev.c.wait_closed(10),
                "invalid frames, %s: the hub closes the tunnel (GOAWAY %r)" % (
                    name, ev.c.goaway and ev.c.goaway[:2]))
        r = result(pending)
        h.check(clean_error(r, (502, 503)),
                "invalid frames, %s: the waiting user gets a clean error" % name, r)
        ev.close()

    # An unknown frame type must be ignored (RFC 9113 §4.1): the tunnel serves on.
    ev = connect(on_request=lambda e, sid, hd: e.respond(sid, [(":status", "200")], b"fine"))
    ev.send(k.frame(0xfa, 0xff, 0, b"?" * 100), k.frame(0xfb, 0, 1, b"!" * 10))
    r = hub.proxy(EVIL, "web", "/ok", token=alice)
    h.check(r.status == 200 and r.body == b"fine" and ev.c.goaway is None,
            "invalid frames: unknown frame types are ignored, the tunnel serves on", r)
    by.check("invalid frames")
    ev.close()

    watch.stop()
    rss_check("end")
    h.check(site_good.proc.alive(), "site good is alive at the end")
    h.check(hub.wait_ready(GOOD, 5) is not None, "site good is online at the end")


Harness.main("test_malicious_site", main)

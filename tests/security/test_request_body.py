#!/usr/bin/env python3
# Attack: a request head whose body never comes must not hold a user connection (request_body_timeout, RST after the answer).
# SPDX-License-Identifier: MIT
"""Held means:
- HTTP/1.1, no token: `POST /v1/enroll` with Content-Length 100 and no body
  gets 408 after request_body_timeout (not before) and the connection closes;
- a body that keeps making progress (a few bytes well within the deadline)
  is not cut, even though it takes longer than the deadline in total;
- a proxied upload that stalls halfway is cut the same way (408), and so
  is one that stalls because the site's service does not read it;
- HTTP/2, no token: HEADERS without END_STREAM gets its 401, then
  RST_STREAM(NO_ERROR) (RFC 9113 8.1), and the connection, now idle, is
  closed by idle_timeout with a GOAWAY;
- HTTP/2 to /v1/enroll (which waits for the body): 408, RST_STREAM, closed;
- a user at another address is served meanwhile;
- an HTTP/1.1 connection that timed out, closing behind unread answers,
  serves nothing it receives afterwards.
Deadlines are compared with the configured values plus slack for a busy
machine."""
import os
import re
import socket
import ssl
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness  # noqa: E402
import idleconn as ic  # noqa: E402
from h2raw import PREFACE, frame, hpack_indexed, hpack_str, split_frames  # noqa: E402

BODY_T = 2.0
IDLE_T = 3.0
SLACK = 6.0


def hold(s, secs):
    """Reads until the hub closes s or secs pass: (bytes, seconds to close or
    None, seconds to the first byte or None)."""
    s.settimeout(0.2)
    t0 = time.monotonic()
    got, first = b"", None
    while time.monotonic() - t0 < secs:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return got, time.monotonic() - t0, first
        if not d:
            return got, time.monotonic() - t0, first
        if first is None:
            first = time.monotonic() - t0
        got += d
    return got, None, first


def tls(ctx, src="127.0.0.2"):
    raw = socket.socket()
    raw.bind((src, 0))
    raw.connect(("127.0.0.1", PORT))
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def h2_post(path, sid=1, method=b"\x83", extra=b""):
    """HEADERS (END_HEADERS only: a body is to follow) for POST path."""
    block = method + b"\x87" + hpack_indexed(4, path) + hpack_indexed(1, "127.0.0.1") + extra
    return frame(1, 0x04, sid, block)


def h1_trickled(h):
    """A body that makes progress every BODY_T/3 s is not cut."""
    body = b'{"token":"' + b"x" * 20 + b'"}'
    s = tls(ic.CTX_H1)
    s.sendall(b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    t0 = time.monotonic()
    step = 4
    for i in range(0, len(body), step):
        s.sendall(body[i:i + step])
        time.sleep(BODY_T / 3)
    took = time.monotonic() - t0
    got, _, _ = hold(s, 10)
    s.close()
    h.check(took > 1.5 * BODY_T and got.startswith(b"HTTP/1.1 4") and not got.startswith(b"HTTP/1.1 408"),
            "a body trickled with progress over %.1f s (deadline %.1f s) is answered, not cut"
            % (took, BODY_T), got[:60])


def timed_out(h, hub):
    st, body = ic.https_get(PORT, "/metrics", hub.token, src="127.0.0.3")
    m = re.search(rb"tether_users_timed_out_total (\d+)", body if st == 200 else b"")
    return int(m.group(1)) if m else -1


def linger_ignored(h, hub, svc):
    """A connection closing after its idle timeout parses nothing more: its
    close waits (the linger) behind answers the client does not read, and a
    request sent then must not be served."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.bind(("127.0.0.4", 0))
    raw.connect(("127.0.0.1", PORT))
    s = ic.CTX_H1.wrap_socket(raw, server_hostname="127.0.0.1")
    auth = b"Authorization: Bearer " + hub.token.encode() + b"\r\n"
    before = timed_out(h, hub)
    # Pipelined answers, more than the kernel's buffers take: the rest waits
    # in the hub, so the idle close lingers.
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 60000)
    t0 = time.monotonic()
    while timed_out(h, hub) <= before and time.monotonic() - t0 < IDLE_T + SLACK:
        time.sleep(0.1)
    h.check(timed_out(h, hub) > before, "a keep-alive connection with unread answers timed out (idle)")
    s.sendall(b"GET /v1/sites/s1/services/web/late HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
    time.sleep(1.0)
    late = svc.stats()["by_route"].get("/late", 0)
    h.check(late == 0, "a request sent after the timeout, during the close, is not served (%d "
            "reached the service)" % late)
    s.close()


class Stuck:
    """A service that accepts connections and never reads from them."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.held = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                self.held.append(self.ls.accept()[0])
            except OSError:
                return


def upload_to_stuck(h, hub):
    """An upload that the site's service never reads stalls once the
    buffers on the way are full; request_body_timeout then cuts it (408),
    long before request_timeout (60 s)."""
    s = tls(ic.CTX_H1, src="127.0.0.6")
    s.sendall(b"POST /v1/sites/s1/services/stuck/up HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer " + hub.token.encode() + b"\r\n"
              b"Content-Length: 268435456\r\n\r\n")
    s.setblocking(False)
    chunk = b"\0" * 65536
    sent, got, t0, sending = 0, b"", time.monotonic(), True
    while time.monotonic() - t0 < 40 and b"\r\n\r\n" not in got:
        if sending:
            try:
                sent += s.send(chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                pass
            except OSError:
                sending = False  # the hub closed: read what it said
        try:
            d = s.recv(65536)
            if not d:
                break
            got += d
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            time.sleep(0.01)
        except OSError:
            break
    took = time.monotonic() - t0
    s.close()
    h.check(got.startswith(b"HTTP/1.1 408 "),
            "an upload the site does not take (%d MiB sent) is cut with 408" % (sent >> 20), got[:60])
    h.check(BODY_T <= took <= BODY_T + 2 * SLACK,
            "... request_body_timeout after the buffers on the way filled, long before "
            "request_timeout (60 s): after %.1f s" % took)


def main(h):
    global PORT
    conf = {"request_body_timeout": BODY_T, "idle_timeout": IDLE_T, "request_head_timeout": IDLE_T}
    hub = ic.start_hub(h, conf, None)
    stuck = Stuck()
    svc = h.service("svc-s1", site_name="s1")
    site = h.site("s1", hub)
    site.enroll(hub.site_add("s1"))
    site.start({"web": svc.url, "stuck": "http://127.0.0.1:%d" % stuck.port})
    h.check(hub.wait_ready("s1", 15) is not None, "site s1 is up")
    PORT = hub.port
    linger_ignored(h, hub, svc)
    upload_to_stuck(h, hub)

    cases = {}
    s = tls(ic.CTX_H1)
    s.sendall(b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    cases["h1-enroll"] = s
    s = tls(ic.CTX_H1)
    s.sendall(b"POST /v1/sites/s1/services/web/echo HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer " + hub.token.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
              + b"y" * 10)
    cases["h1-proxied"] = s
    s = tls(ic.CTX_H2)
    s.sendall(PREFACE + ic.H2_SETTINGS + h2_post("/v1/sites"))
    cases["h2-401"] = s
    s = tls(ic.CTX_H2)
    s.sendall(PREFACE + ic.H2_SETTINGS + h2_post("/v1/enroll"))
    cases["h2-enroll"] = s
    s = tls(ic.CTX_H2)
    s.sendall(PREFACE + ic.H2_SETTINGS +
              h2_post("/v1/sites/s1/services/web/echo", method=hpack_indexed(2, "HEAD"),
                      extra=b"\x00" + hpack_str(b"authorization") +
                      hpack_str(b"Bearer " + hub.token.encode())))
    cases["h2-head"] = s

    res = {}

    def run(name, sock):
        res[name] = hold(sock, BODY_T + IDLE_T + 2 * SLACK)

    ts = [threading.Thread(target=run, args=kv) for kv in cases.items()]
    [t.start() for t in ts]
    st, body = ic.https_get(PORT, "/v1/sites/s1/services/web/echo?during=1", hub.token,
                            src="127.0.0.3")
    h.check(st == 200, "a user at another address is served meanwhile", (st, body[:100]))
    h1_trickled(h)
    [t.join() for t in ts]

    for name in ("h1-enroll", "h1-proxied"):
        got, closed, first = res[name]
        h.check(got.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in got,
                "%s: a body that never comes gets 408 Request Timeout" % name, got[:80])
        h.check(first is not None and 0.8 * BODY_T <= first <= BODY_T + SLACK,
                "%s: ... after request_body_timeout (%.1f s; got it after %s s)"
                % (name, BODY_T, first))
        h.check(closed is not None, "%s: ... and the connection is closed" % name)

    got, closed, first = res["h2-401"]
    fr = split_frames(got)[0]
    h.check(any(t == 1 and s == 1 for t, _, s, _ in fr) and any(t == 3 and s == 1 and p == b"\x00\x00\x00\x00" for t, _, s, p in fr),
            "h2: HEADERS without END_STREAM gets its answer, then RST_STREAM(NO_ERROR)",
            [(t, f, s) for t, f, s, _ in fr])
    h.check(any(t == 7 for t, _, _, _ in fr) and closed is not None and closed <= IDLE_T + SLACK,
            "h2: ... and the connection, idle once answered, gets a GOAWAY and is closed by "
            "idle_timeout (%.1f s; closed after %s s)" % (IDLE_T, closed))

    got, closed, first = res["h2-enroll"]
    fr = split_frames(got)[0]
    h.check(any(t == 1 and s == 1 for t, _, s, _ in fr)
            and any(t == 0 and s == 1 and b"request_timeout" in p for t, _, s, p in fr),
            "h2: a body that never comes gets 408 (request_timeout)",
            [(t, f, s, p[:20]) for t, f, s, p in fr])
    h.check(any(t == 3 and s == 1 and p == b"\x00\x00\x00\x00" for t, _, s, p in fr),
            "h2: ... then RST_STREAM(NO_ERROR)")
    h.check(closed is not None and closed <= BODY_T + IDLE_T + SLACK,
            "h2: ... and the connection is closed by idle_timeout after that (closed after %s s)"
            % closed)
    got, closed, first = res["h2-head"]
    fr = split_frames(got)[0]
    h.check(any(t == 1 and s == 1 and f & 1 for t, f, s, _ in fr)
            and any(t == 3 and s == 1 and p == b"\x00\x00\x00\x00" for t, _, s, p in fr),
            "h2: a proxied HEAD whose body never ends gets its answer, then RST_STREAM(NO_ERROR)",
            [(t, f, s) for t, f, s, _ in fr])
    for s in cases.values():
        s.close()


if __name__ == "__main__":
    Harness.main("request_body", main)

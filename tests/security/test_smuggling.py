#!/usr/bin/env python3
# Attack suite: HTTP/1.1 request smuggling through the hub to a service that records the raw bytes it receives.
# SPDX-License-Identifier: MIT
"""Each attack is sent on its own TLS connection to the hub, aimed at a
RawService (tests/security/rawsvc.py) behind the site; a smuggled second
request, if any, asks for a path holding "smuggled". Held means, for every
attack (CL+TE, TE+CL, two Content-Lengths, obs-fold, bare CR, bare LF, NUL,
chunk-size overflow, odd Transfer-Encodings):
- the hub answers 400 (must_refuse), or, for forms RFC 9112 lets a server
  accept (bare LF line ends, obs-fold replaced by a space), 400 or one 200;
- the service never receives a request for "smuggled", never more than one
  complete request per attack, and every complete request it receives is
  well formed (rawsvc's strict RFC 9112 check); when the hub refused, the
  service saw no complete request (at most one cut short, when the body's
  framing broke after the head had gone on);
- meanwhile a second user (bob) on a kept-alive connection and on a
  connection of its own in a background thread is served every time, and
  another site is served at the end.
"""
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness, tls_connect  # noqa: E402
import rawsvc  # noqa: E402

SITE = "smug-a"
P = "/v1/sites/%s/services/web" % SITE


def read_responses(s, idle=1.0, timeout=10.0):
    """Reads HTTP/1.1 responses until the peer closes or sends nothing for
    idle seconds after a complete response. Returns ([status...], closed)."""
    buf, statuses, closed = b"", [], False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            hdrs = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                hdrs[k.strip().lower()] = v.strip()
            n = int(hdrs.get(b"content-length", b"0"))
            if len(rest) < n:
                break
            statuses.append(int(lines[0].split()[1]))
            buf = rest[n:]
        if closed:
            break
        s.settimeout(idle if statuses and not buf else max(0.1, deadline - time.monotonic()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            if statuses and not buf:
                break
            continue
        except OSError:
            d = b""
        if not d:
            closed = True
        buf += d
    return statuses, closed


def settle(svc, mark, quiet=0.3, limit=5.0):
    """Waits until the service has recorded nothing new for quiet seconds
    (bob's requests aside: they never stop)."""
    n, t_last, end = -1, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < end:
        k = len([g for g in svc.records(mark) if not (g.target or "").startswith("/victim")])
        if k != n:
            n, t_last = k, time.monotonic()
        elif time.monotonic() - t_last >= quiet:
            return
        time.sleep(0.05)


def request(s, target, token, extra=""):
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n%s\r\n"
               % (target, token, extra)).encode())


def attacks(tok):
    a = "Authorization: Bearer %s\r\n" % tok
    smug = "GET %s/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (P, a)
    post = "POST %s/a HTTP/1.1\r\nHost: 127.0.0.1\r\n%s" % (P, a)
    # (name, bytes, must_refuse)
    return [
        ("CL+TE", post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smug,
         True),
        ("TE+CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smug,
         True),
        ("two Content-Lengths", post + "Content-Length: 3\r\nContent-Length: 60\r\n\r\nabc"
         + smug, True),
        ("Content-Length list", post + "Content-Length: 3, 60\r\n\r\nabc" + smug, True),
        ("Content-Length with space before colon", post + "Content-Length : 3\r\n\r\nabc" + smug,
         True),
        ("negative Content-Length", post + "Content-Length: -1\r\n\r\n" + smug, True),
        ("Transfer-Encoding: xchunked with CL", post
         + "Transfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\nabc" + smug, True),
        ("Transfer-Encoding: chunked, identity", post
         + "Transfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smug, True),
        ("two Transfer-Encodings", post + "Transfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smug, True),
        ("Transfer-Encoding: identity", post + "Transfer-Encoding: identity\r\n\r\nabc" + smug,
         True),
        ("obs-fold of Transfer-Encoding", post
         + "Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smug, True),
        ("obs-fold of an ordinary header", post
         + "X-Folded: one\r\n two\r\nContent-Length: 3\r\n\r\nabc", False),
        ("bare CR in a header", post + "X-A: a\rTransfer-Encoding: chunked\r\n"
         "Content-Length: 3\r\n\r\nabc", True),
        ("bare CR ending a line", post + "X-A: a\rContent-Length: 3\r\n\r\nabc", True),
        ("bare LF line ends", "POST %s/a HTTP/1.1\nHost: 127.0.0.1\n%s\nContent-Length: 3\n\nabc"
         % (P, a.strip()), False),
        ("bare LF inside a header block", post + "X-A: a\nX-B: b\r\nContent-Length: 3\r\n\r\nabc",
         False),
        ("two Host headers", "GET %s/a HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n%s\r\n"
         % (P, a), True),
        ("NUL in a header value", post + "X-A: a\0b\r\nContent-Length: 3\r\n\r\nabc", True),
        ("NUL in the target", "GET %s/a\0b HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (P, a), True),
        ("chunk-size overflow (17 hex digits)", post
         + "Transfer-Encoding: chunked\r\n\r\n1FFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n" + smug, True),
        ("chunk-size overflow (2^64)", post
         + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n0\r\n\r\n" + smug, True),
        ("chunk-size with a sign", post
         + "Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n" + smug, True),
    ]


def main(h):
    web = rawsvc.RawService()
    hub, site, bob = rawsvc.stage(h, SITE, {"web": web.url})

    # Bob's background user: its own connection, a request every 50 ms.
    stop = threading.Event()
    bg = {"ok": 0, "bad": []}

    def background():
        s = None
        n = 0
        while not stop.is_set():
            try:
                if s is None:
                    s = tls_connect(hub.port)
                n += 1
                request(s, "%s/victim-bg/%d" % (P, n), bob)
                st, closed = read_responses(s, idle=0.05)
                if st == [200]:
                    bg["ok"] += 1
                else:
                    bg["bad"].append((n, st))
                if closed:
                    s.close()
                    s = None
            except Exception as e:  # recorded, the check below fails
                bg["bad"].append((n, repr(e)))
                s = None
            time.sleep(0.05)
        if s is not None:
            s.close()

    t = threading.Thread(target=background, daemon=True)
    t.start()
    victim = tls_connect(hub.port)

    for i, (name, data, must_refuse) in enumerate(attacks(hub.token)):
        # Each attack's own path, so that what reaches the service late is
        # still told apart.
        data = data.replace(P + "/a", P + "/a%d" % i)
        mine = (b"/a%d " % i, b"smuggled")
        m = web.mark()
        s = tls_connect(hub.port)
        try:
            s.sendall(data.encode("latin-1"))
            statuses, _closed = read_responses(s)
        finally:
            s.close()
        settle(web, m)
        got = [g for g in web.records(m) if any(k in g.raw for k in mine)]
        complete = [g for g in got if g.ok]
        cut = [g for g in got if not g.ok]
        tag = "attack %r" % name
        h.info("%s: hub %s; service saw %s" % (tag, statuses, [
            (g.why or "ok", g.target, g.header("x-folded") or g.header("x-a")) for g in got]))
        if must_refuse:
            h.check(statuses[:1] == [400], "%s: the hub answers 400" % tag, statuses)
        else:
            h.check(statuses[:1] in ([400], [200]) and len(statuses) <= 1,
                    "%s: the hub answers one 400 or one 200" % tag, statuses)
        h.check(not [g for g in got if b"smuggled" in g.raw],
                "%s: no smuggled request reached the service" % tag, got)
        if statuses[:1] == [200]:
            h.check(len(complete) == 1 and not cut,
                    "%s: answered 200, the service saw exactly one well-formed request" % tag,
                    got)
        else:
            h.check(not complete and len(cut) <= 1 and all(g.why == "truncated" for g in cut),
                    "%s: refused, the service saw no complete request (at most one cut short)"
                    % tag, got)
        # The kept-alive victim is served after each attack.
        request(victim, "%s/victim/%d" % (P, i), bob)
        st, closed = read_responses(victim, idle=0.05)
        h.check(st == [200] and not closed, "%s: bob's kept-alive connection is served" % tag,
                st)

    # Pipelining that is not an attack still works: two requests, two answers.
    m = web.mark()
    s = tls_connect(hub.port)
    s.sendall(("POST %s/p1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
               "Content-Length: 5\r\n\r\nhelloGET %s/p2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (P, hub.token, P, hub.token)).encode())
    st, _ = read_responses(s)
    s.close()
    settle(web, m)
    got = [g for g in web.records(m) if not (g.target or "").startswith("/victim")]
    h.check(st == [200, 200] and [g.target for g in got] == ["/p1", "/p2"]
            and all(g.ok for g in got),
            "control: two pipelined requests arrive as two well-formed requests", (st, got))

    stop.set()
    t.join(10)
    victim.close()
    h.check(bg["ok"] > 0 and not bg["bad"],
            "bob's background requests were all served during the attacks (%d)" % bg["ok"],
            bg["bad"][:5])
    rawsvc.others_served(h, hub, bob, SITE, "web", "after the smuggling attempts")
    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")


if __name__ == "__main__":
    Harness.main("security_smuggling", main)

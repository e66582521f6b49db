#!/usr/bin/env python3
# Integration: tcp:// services reached by HTTP/2 CONNECT through the hub: echo, half-close, errors, bulk, many streams.
# SPDX-License-Identifier: MIT
"""A site offers tcp:// services (python TCP servers on loopback); users
reach them with HTTP/2 extended CONNECT (:protocol connect-tcp, :path
/v1/sites/SITE/services/SVC) and classic CONNECT (:authority SITE.SVC:port)
on their TLS connection to the hub (python3-h2). Each CONNECT is one stream
of the site's one tunnel."""
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, closed_port  # noqa: E402
from bytestreams import (BannerThenRead, Client, TcpService, digest_at_eof, echo,  # noqa: E402
                         has_asan, need_h2, start_hub_site)
from h2stall import make_user_token  # noqa: E402

SITE = "clinic-a"


def main(h):
    need_h2()
    echo_svc = TcpService(echo)
    digest_svc = TcpService(digest_at_eof)
    banner = BannerThenRead()
    banner_svc = TcpService(banner)
    services = {"echo": echo_svc.url, "digest": digest_svc.url,
                "banner": banner_svc.url, "dead": "tcp://127.0.0.1:%d" % closed_port()}
    hub, site = start_hub_site(h, SITE, services)
    asan = has_asan(hub.proc.pid)
    tok = make_user_token(hub, "u0")

    # The hub's user sessions announce extended CONNECT.
    c = Client(hub.port, tok)
    c.pump(lambda: c.enable_connect is not None, 10, "the hub's SETTINGS")
    h.check(c.enable_connect == 1, "the hub's users' SETTINGS carry ENABLE_CONNECT_PROTOCOL=1",
            c.enable_connect)

    # Echo through extended CONNECT, then through classic CONNECT.
    for classic in (False, True):
        st = c.open("echo", classic=classic)
        st.send(b"hello through the tunnel\n")
        c.pump(lambda: len(st.data) >= 25 or st.done, 15, "the echo")
        kind = "classic" if classic else "extended"
        h.check(st.status == 200, "%s CONNECT to a tcp:// service answers 200" % kind,
                (st.status, st.headers))
        h.check(bytes(st.data) == b"hello through the tunnel\n",
                "%s CONNECT: the service's echo comes back" % kind, bytes(st.data[:80]))
        st.send(b"", end=True)
        c.pump(lambda: st.done, 15, "the echo stream's end")
        h.check(st.ended and st.reset is None,
                "%s CONNECT: END_STREAM from the user is the service's EOF; its EOF comes "
                "back as END_STREAM" % kind, (st.ended, st.reset))

    # Half-close user -> service: the service reads to EOF and only then answers.
    payload = os.urandom(300000)
    st = c.open("digest")
    st.send(payload, end=True)
    c.pump(lambda: st.done, 20, "the digest answer")
    want = b"%d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
    h.check(st.status == 200 and bytes(st.data) == want and st.ended,
            "the user's END_STREAM reaches the service as EOF; the answer it writes after "
            "comes back whole, then END_STREAM", (st.status, bytes(st.data[:100]), st.ended))

    # Half-close service -> user: the user sees the service's EOF and can
    # still send; the service reads what was sent after its own EOF.
    st = c.open("banner")
    c.pump(lambda: st.ended or st.reset is not None, 15, "the banner and its EOF")
    h.check(bytes(st.data) == b"banner\n" and st.ended and st.reset is None,
            "the service's EOF reaches the user as END_STREAM while the stream stays open",
            (bytes(st.data), st.ended, st.reset))
    st.send(b"sent after the service's EOF", end=True)
    c.pump(lambda: len(banner.got) >= 1 or c.streams[st.sid].reset is not None, 15,
           "the service to read after its EOF")
    h.check(banner.got[:1] == [b"sent after the service's EOF"],
            "bytes sent after the service half-closed reach it, then EOF", banner.got)

    # Errors: a refused port, an unknown service, an HTTP request to a TCP service.
    st = c.open("dead")
    c.pump(lambda: st.done, 20, "the refused service's answer")
    body = {}
    try:
        body = json.loads(bytes(st.data))
    except ValueError:
        pass
    h.check(st.status == 502 and body.get("error") == "bad_gateway" and
            "refused" in body.get("detail", ""),
            "a refused tcp:// service is a 502 whose detail says refused",
            (st.status, bytes(st.data[:300])))
    st = c.open("nosuch")
    c.pump(lambda: st.done, 15, "the unknown service's answer")
    h.check(st.status == 404, "CONNECT to a service the site lacks is a 404", st.status)
    st = c.open("web")
    st.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", end=True)
    c.pump(lambda: st.done, 15, "CONNECT to an http:// service")
    h.check(st.status == 400, "CONNECT to an http:// service is refused (400)",
            (st.status, bytes(st.data[:200])))
    r = hub.proxy(SITE, "echo", "/", token=tok)
    h.check(r.status == 400 and "CONNECT" in r.body.decode(errors="replace"),
            "a plain HTTP request to a tcp:// service is a 400 saying to use CONNECT",
            (r.status, r.body[:200]))
    c.close()

    # Scope: a token for other sites is refused per stream, never dialled;
    # every CONNECT is audited like a state-changing proxied request.
    before = echo_svc.accepted
    r = hub.ctl("token", "create", "elsewhere", "--role", "user", "--sites", "other-site")
    h.check(r.rc == 0, "token limited to another site created", r)
    c = Client(hub.port, r.stdout.strip())
    st = c.open("echo")
    c.pump(lambda: st.done, 15, "the out-of-scope CONNECT's answer")
    h.check(st.status in (403, 404) and echo_svc.accepted == before,
            "a CONNECT with a token scoped to other sites is refused and never reaches the "
            "service", (st.status, echo_svc.accepted - before))
    c.close()
    # A token limited to another service of this very site: refused per stream
    # too (issue 13, per-service scopes), before the site dials anything.
    r = hub.ctl("token", "create", "web-only", "--role", "user", "--sites", SITE,
                "--services", "web")
    h.check(r.rc == 0, "token limited to the web service created", r)
    c = Client(hub.port, r.stdout.strip())
    st = c.open("echo")
    c.pump(lambda: st.done, 15, "the CONNECT of a token without the service")
    h.check(st.status == 403 and echo_svc.accepted == before,
            "a CONNECT to a service outside the token's services is a 403 and never reaches "
            "the service", (st.status, echo_svc.accepted - before))
    c.close()
    rows = hub.api("GET", "/v1/audit?limit=1000").json().get("entries", [])
    conn_rows = [e for e in rows if e.get("action") == "proxy" and
                 e.get("detail", "").startswith("CONNECT")]
    h.check(any(e.get("target") == SITE + "/echo" and e.get("result") == "forwarded" and
                e.get("actor") == "u0" for e in conn_rows) and
            any(e.get("actor") == "elsewhere" and e.get("result") != "forwarded"
                for e in conn_rows),
            "CONNECTs are audited (proxy, CONNECT /), the forwarded ones and the refused one",
            conn_rows[:4])

    # Without a token: 401, nothing dialled.
    before = echo_svc.accepted
    c = Client(hub.port, "tth_bogus")
    st = c.open("echo")
    c.pump(lambda: st.done, 15, "the unauthenticated CONNECT's answer")
    h.check(st.status == 401 and echo_svc.accepted == before,
            "a CONNECT without a valid token is a 401 and never reaches the service",
            (st.status, echo_svc.accepted - before))
    c.close()

    # Bulk: MiB each way through the echo service, checked by SHA-256.
    mib = int(os.environ.get("TETHER_TCP_BULK_MIB", "32" if asan else "256"))
    c = Client(hub.port, tok)
    st = c.open("echo", keep=False)
    chunk = os.urandom(1 << 20)
    sent = hashlib.sha256()
    for _ in range(mib):
        sent.update(chunk)
    t0 = time.monotonic()
    queued = [0]

    def feed():
        # Keep a few MiB queued rather than the whole transfer in memory.
        while queued[0] < mib and len(st.out) < (4 << 20):
            st.send(chunk, end=queued[0] + 1 == mib)
            queued[0] += 1
        return st.received >= mib << 20 or st.done

    c.pump(feed, 300, "the bulk echo")
    c.pump(lambda: st.done, 30, "the bulk stream's end")
    secs = time.monotonic() - t0
    h.check(st.received == mib << 20 and st.hash.hexdigest() == sent.hexdigest() and st.ended,
            "%d MiB each way through a tcp:// service arrive whole (SHA-256)" % mib,
            (st.received, st.ended, st.reset))
    h.info("bulk: %d MiB each way in %.2f s: %.1f MB/s each way" %
           (mib, secs, mib * 1.048576 / secs))
    c.close()

    # 200 streams at once over the one tunnel, from ONE token on ONE user
    # connection: byte streams are long-lived and have their own pool of the
    # site's slots (max_long_streams_per_token, 512), apart from the token's
    # share of request slots (64).
    n = 200
    cl = Client(hub.port, tok)
    cl.pump(lambda: cl.c.remote_settings.max_concurrent_streams >= n, 10,
            "the hub's SETTINGS")
    h.check(cl.c.remote_settings.max_concurrent_streams >= n,
            "one user connection may carry %d streams at once" % n,
            cl.c.remote_settings.max_concurrent_streams)
    opened = []
    for j in range(n):
        s = cl.open("echo")
        s.msg = b"stream %d\n" % j
        opened.append(s)
    # Every stream is open (200 answered) before any sends: all at once.
    cl.pump(lambda: all(s.status is not None for s in opened), 60, "200 streams to open")
    h.check(all(s.status == 200 for s in opened),
            "200 CONNECT streams open at once, one token, one connection",
            sorted(set(s.status for s in opened)))
    h.wait_until(lambda: echo_svc.open_now() >= n, 20)
    h.check(echo_svc.open_now() >= n, "the service holds 200 connections at once",
            echo_svc.open_now())
    # Meanwhile the same token's plain requests still have their own slots.
    r = hub.proxy(SITE, "web", "/bytes/100", token=tok)
    h.check(r.status == 200 and len(r.body) == 100, "while its 200 streams are open, the token's plain request is "
            "served", r.status)
    for s in opened:
        s.send(s.msg, end=True)
    cl.pump(lambda: all(s.done for s in opened), 60, "200 echoes")
    h.check(all(bytes(s.data) == s.msg and s.ended for s in opened),
            "each of the 200 streams gets its own bytes back, then END_STREAM",
            [bytes(s.data) for s in opened if bytes(s.data) != s.msg][:3])
    cl.close()
    h.check(len(hub.sites()) == 1 and site.proc.alive, "one site, one tunnel, still up")


Harness.main("test_tcp_service", main)

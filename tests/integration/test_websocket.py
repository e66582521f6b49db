#!/usr/bin/env python3
# Integration: WebSocket through the hub over HTTP/2 extended CONNECT (:protocol websocket) to a real python3-websockets server.
# SPDX-License-Identifier: MIT
"""A python3-websockets server is an http:// service of a site. Users open
WebSockets with RFC 8441 extended CONNECT on their HTTP/2 connection to the
hub (python3-h2 for HTTP/2, python3-wsproto for the frames); the site makes
the HTTP/1.1 upgrade to the service. Frames pass verbatim: echo, ping/pong,
close codes both ways, 64 MiB each way by hash, 100 sockets at once, and an
idle socket outlives hub and site timeouts set far shorter than its idleness."""
import asyncio
import hashlib
import os
import shutil
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Skip, debian_import  # noqa: E402
from bytestreams import Client, has_asan, need_h2, start_hub_site  # noqa: E402
from h2stall import make_user_token  # noqa: E402
from wsserver import WsServer, WsStream  # noqa: E402

if debian_import("websockets", "wsproto.connection", "wsproto.events"):
    import websockets
    from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
else:
    websockets = None

SITE = "clinic-a"


async def h1_client(port, tok, mib):
    """The python3-websockets client over TLS + HTTP/1.1 to the hub."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    uri = "wss://127.0.0.1:%d/v1/sites/%s/services/ws" % (port, SITE)
    kw = dict(ssl=ctx, extra_headers={"Authorization": "Bearer " + tok}, max_size=None,
              compression=None, ping_interval=None, open_timeout=20)
    res = {}
    async with websockets.connect(uri + "/h1", subprotocols=["chat"], **kw) as ws:
        res["subprotocol"] = ws.subprotocol
        await ws.send("hello over http/1.1")
        res["echo"] = await asyncio.wait_for(ws.recv(), 20)
        pong = await ws.ping(b"p")
        await asyncio.wait_for(pong, 20)
        res["pong"] = True
        # Idle (no pings: ping_interval=None) for six times the hub's
        # idle_timeout and request_body_timeout.
        await asyncio.sleep(3.0)
        await ws.send("after 3 s idle")
        res["idle_echo"] = await asyncio.wait_for(ws.recv(), 20)
        sent, got = hashlib.sha256(), hashlib.sha256()
        msg = os.urandom(1 << 20)

        async def writer():
            for _ in range(mib):
                sent.update(msg)
                await ws.send(msg)

        async def reader():
            for _ in range(mib):
                got.update(await asyncio.wait_for(ws.recv(), 60))
        await asyncio.gather(writer(), reader())
        res["bulk_ok"] = sent.hexdigest() == got.hexdigest()

        async def one(i):
            async with websockets.connect(uri + "/many", **kw) as w2:
                await w2.send("many %d" % i)
                return await asyncio.wait_for(w2.recv(), 30) == "many %d" % i
        res["many"] = sum(await asyncio.gather(*(one(i) for i in range(20))))
        await ws.close(4003, "h1 bye")
        res["close_code"] = ws.close_code
    return res


def main(h):
    need_h2()
    if websockets is None:
        raise Skip("python3-websockets / python3-wsproto not installed (deploy/setup.sh)")
    srv = WsServer()
    # Hub and site timeouts far below the idle time tested at the end.
    hub, site = start_hub_site(h, SITE, {"ws": srv.url},
                               hub_conf={"idle_timeout": "0.5", "request_body_timeout": "0.5",
                                         "request_timeout": "1"},
                               site_args=["--upstream-timeout", "1"])
    asan = has_asan(hub.proc.pid)
    tok = make_user_token(hub, "u0")
    c = Client(hub.port, tok)

    w = WsStream(c)
    c.pump(lambda: w.st.status is not None, 15, "the upgrade's answer")
    h.check(w.st.status == 200 and w.st.headers.get("sec-websocket-protocol") == "chat",
            "extended CONNECT :protocol websocket answers 200 with the service's chosen "
            "subprotocol", (w.st.status, w.st.headers))
    w.send(TextMessage(data="hello websocket"))
    ev = w.wait(TextMessage)
    h.check(ev is not None and ev.data == "hello websocket", "a text message comes back", ev)
    w.send(Ping(payload=b"are you there"))
    ev = w.wait(Pong)
    h.check(ev is not None and bytes(ev.payload) == b"are you there",
            "ping passes to the service and its pong comes back with the payload", ev)

    # Idle longer than the hub's idle_timeout, request_body_timeout and
    # request_timeout and the site's upstream timeout: the socket lives on.
    t0 = time.monotonic()
    c.pump(lambda: time.monotonic() - t0 > 3.0, 10, "3 s of idleness")
    w.send(TextMessage(data="still here"))
    ev = w.wait(TextMessage)
    h.check(ev is not None and ev.data == "still here" and not w.st.done,
            "an idle WebSocket outlives hub and site timeouts of 0.5-1 s (3 s idle)", ev)
    # Past the hub, NATs and firewalls on the user's path drop idle mappings
    # (350 s is common): the hub's TCP keepalive on user connections keeps
    # them, and finds a user gone without a FIN.
    if shutil.which("ss"):
        line = subprocess.run(
            ["ss", "-tnoH", "state", "established", "( sport = :%d and dport = :%d )"
             % (hub.port, c.sock.getsockname()[1])],
            capture_output=True, text=True, timeout=10).stdout.strip()
        h.check("keepalive" in line, "the hub's socket of the user connection has TCP "
                "keepalive on", line)

    # Close with a code, client first: the server sees it, and its answer
    # comes back with the same code.
    w.send(CloseConnection(code=4001, reason="client says bye"))
    ev = w.wait(CloseConnection)
    h.check(ev is not None and ev.code == 4001, "the server's close frame echoes code 4001", ev)
    h.wait_until(lambda: ("/ws/echo", 4001) in srv.closes, 10)
    h.check(("/ws/echo", 4001) in srv.closes, "the server saw close code 4001 from the user",
            srv.closes)
    w.st.send(b"", end=True)
    c.pump(lambda: w.st.done, 15, "the stream's end after close")
    h.check(w.st.ended and w.st.reset is None, "the stream ends cleanly after the close",
            (w.st.ended, w.st.reset))
    c.close()

    # Server-initiated close with a code. (A new connection each time: the
    # hub's 0.5 s idle_timeout closes a connection without open streams.)
    c = Client(hub.port, tok)
    w = WsStream(c, path="/close")
    ev = w.wait(CloseConnection)
    h.check(ev is not None and ev.code == 4002 and ev.reason == "server says bye",
            "the server's close code 4002 and reason reach the user", ev)
    w.send(ev.response())
    w.st.send(b"", end=True)
    c.pump(lambda: w.st.done, 15, "the closed socket's end")
    c.close()

    # Bulk: MiB each way in 1 MiB binary messages, checked by SHA-256.
    mib = int(os.environ.get("TETHER_WS_BULK_MIB", "8" if asan else "64"))
    c = Client(hub.port, tok)
    w = WsStream(c, keep=False)
    c.pump(lambda: w.st.status is not None, 15, "the bulk socket's upgrade")
    sent = hashlib.sha256()
    msgs = [os.urandom(1 << 20) for _ in range(4)]
    queued = [0]
    t0 = time.monotonic()

    def feed():
        while queued[0] < mib and len(w.st.out) < (4 << 20):
            m = msgs[queued[0] % 4]
            sent.update(m)
            w.send(BytesMessage(data=m))
            queued[0] += 1
        w.poll()
        return w.got_bytes >= mib << 20 or w.st.done

    c.pump(feed, 300, "the bulk echo")
    secs = time.monotonic() - t0
    h.check(w.got_bytes == mib << 20 and w.hash.hexdigest() == sent.hexdigest(),
            "%d MiB each way through a WebSocket arrive whole (SHA-256)" % mib,
            (w.got_bytes, w.st.done))
    h.info("websocket bulk: %d MiB each way in %.2f s: %.1f MB/s each way"
           % (mib, secs, mib * 1.048576 / secs))
    w.send(CloseConnection(code=1000))
    w.wait(CloseConnection)
    c.close()

    # 100 sockets at once, one token on one connection: WebSockets are
    # long-lived streams with their own pool of the site's slots, apart from
    # the token's share of request slots (64).
    cl = Client(hub.port, tok)
    socks = []
    for i in range(100):
        s = WsStream(cl, protocols=())
        s.msg = "socket %d" % i
        socks.append(s)
    cl.pump(lambda: all(s.st.status is not None for s in socks), 60, "100 upgrades")
    h.check(all(s.st.status == 200 for s in socks),
            "100 WebSockets open at once, one token, one connection",
            sorted(set(s.st.status for s in socks)))
    for s in socks:
        s.send(TextMessage(data=s.msg))

    def echoed(s):
        s.poll()
        return any(isinstance(e, TextMessage) and e.data == s.msg for e in s.events)
    cl.pump(lambda: all([echoed(s) for s in socks]), 60, "100 echoes")
    h.check(all(echoed(s) for s in socks), "each of the 100 sockets gets its own message back")
    cl.close()

    # HTTP/1.1 users: the real python3-websockets client, Upgrade: websocket.
    h1_mib = 2 if asan else 16
    res = asyncio.new_event_loop().run_until_complete(h1_client(hub.port, tok, h1_mib))
    h.check(res["subprotocol"] == "chat" and res["echo"] == "hello over http/1.1",
            "HTTP/1.1 Upgrade: the hub answers 101 (websockets checked the Accept), the "
            "service's subprotocol comes back, a message echoes", res)
    h.check(res["pong"], "HTTP/1.1: ping answered by a pong through hub and site", res)
    h.check(res["idle_echo"] == "after 3 s idle",
            "HTTP/1.1: an idle WebSocket outlives hub and site timeouts of 0.5-1 s (3 s idle)",
            res)
    h.check(res["bulk_ok"], "HTTP/1.1: %d MiB each way arrive whole (SHA-256)" % h1_mib, res)
    h.check(res["many"] == 20, "HTTP/1.1: 20 WebSockets at once each echo their own message",
            res)
    h.check(res["close_code"] == 4003, "HTTP/1.1: the close code 4003 comes back", res)
    h.wait_until(lambda: ("/ws/h1", 4003) in srv.closes, 10)
    h.check(("/ws/h1", 4003) in srv.closes, "HTTP/1.1: the server saw close code 4003",
            srv.closes)
    h.check(site.proc.alive and hub.proc.alive, "hub and site still up")


Harness.main("test_websocket", main)

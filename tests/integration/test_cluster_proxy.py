#!/usr/bin/env python3
# Integration: any hub serves any user: a request to hub A for a site whose tunnel is on hub B goes over the peer link (status and body as B answers them, a 4 MiB upload, HTTP/1.1 and HTTP/2), B checks the token itself, and after kill -9 of B the site fails over to A, which serves it again.
# SPDX-License-Identifier: MIT
import asyncio
import hashlib
import json
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from bytestreams import Client, TcpService, echo  # noqa: E402
from wsserver import WsServer, websockets  # noqa: E402

FAILOVER_S = 10.0


async def ws_echo(hub, text):
    """A WebSocket over TLS + HTTP/1.1 to hub: the echo of text."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    uri = "wss://127.0.0.1:%d/v1/sites/s1/services/ws/hop" % hub.port
    async with websockets.connect(uri, ssl=ctx, extra_headers={"Authorization": "Bearer " +
                                                               hub.token},
                                  compression=None, ping_interval=None, open_timeout=10) as ws:
        await ws.send(text)
        return await asyncio.wait_for(ws.recv(), 10)


def main(h):
    h.pg_only("a cluster is several hubs on one PostgreSQL database")
    # The site enrolls with a token from B, which lists B first: it connects there.
    svc = h.service("svc-s1", site_name="s1")
    tcp = TcpService(echo)
    services = {"web": svc.url, "echo": tcp.url}
    wss = WsServer() if websockets is not None else None
    if wss is not None:
        services["ws"] = wss.url
    a, b, site = h.cluster_pair("s1", services, ["--ping-interval", "1"])
    hubs = {x.get("pin"): x for x in (a.curl("/v1/hubs").json() or {}).get("hubs", [])}
    ha, hb = hubs.get(a.pin, {}), hubs.get(b.pin, {})
    h.check(len(hubs) == 2 and ha.get("self") is True and ha.get("link") == "self" and
            hb.get("self") is False and hb.get("link") == "up" and hb.get("sites") == 1 and
            ha.get("sites") == 0 and hb.get("public") == [b.addr],
            "GET /v1/hubs on A: both hubs, A's link to B up, B holding the one site", hubs)
    s1 = a.sites().get("s1", {})
    h.check(s1.get("online") is True and s1.get("local") is False and
            s1.get("hub_id") == hb.get("id") and s1.get("remote_addr") and
            s1.get("connected_since"),
            "hub A lists the site online through hub B (local false, B's hub id, the site's "
            "address and connect time from B's session)", s1)
    r = a.ctl("hub", "list")
    rows = [line.split() for line in r.stdout.splitlines()]
    h.check(r.rc == 0 and rows and rows[0][:4] == ["ID", "NAME", "LINK", "SITES"] and
            [str(hb.get("id")), "127.0.0.1", "up", "1"] in [x[:4] for x in rows[1:]],
            "tetherctl hub list shows the link to B up and B's site", r)
    r = a.curl("/v1/hubs", token=a.token_create("user-s1", "--role", "user", "--sites", "s1"))
    h.check(r.status == 403, "GET /v1/hubs needs an admin token", r)

    # A GET through A: the same status and body as through B.
    direct = b.proxy("s1", "web", "/bytes/100000")
    via = a.proxy("s1", "web", "/bytes/100000")
    h.check(direct.status == 200 and len(direct.body) == 100000, "GET through hub B", direct)
    h.check(via.status == direct.status and via.body == direct.body,
            "GET through hub A: status and body equal to hub B's answer", via)
    via2 = a.proxy("s1", "web", "/bytes/100000", http="2")
    h.check(via2.status == 200 and via2.body == direct.body and via2.version == "2",
            "the same over HTTP/2 to hub A", via2)
    e = a.proxy("s1", "web", "/echo?x=1").json() or {}
    hd = e.get("headers", {})
    h.check(e.get("query") == "x=1" and hd.get("x-forwarded-for") == "127.0.0.1" and
            "authorization" not in hd and hd.get("x-tether-user"),
            "the service sees the path, the user's address and the token's name, not the token",
            e)
    st = a.proxy("s1", "web", "/status/418")
    h.check(st.status == 418, "a status the site answers comes back through A", st)

    # A 4 MiB upload through A round-trips.
    data = os.urandom(4 << 20)
    path = os.path.join(h.tmp, "up.bin")
    with open(path, "wb") as f:
        f.write(data)
    t0 = time.monotonic()
    up = a.proxy("s1", "web", "/sha256", method="POST", data_file=path)
    h.info("4 MiB POST through A: %.2f s" % (time.monotonic() - t0))
    got = up.json() or {}
    h.check(up.status == 200 and got.get("bytes") == len(data) and
            got.get("sha256") == hashlib.sha256(data).hexdigest(),
            "a 4 MiB POST through hub A reaches the site whole", up)

    # Refusals: a bad token, an unknown site.
    r = a.proxy("s1", "web", "/echo", token="tok_not_a_token")
    h.check(r.status == 401, "a bad token through hub A gets 401", r)
    r = a.proxy("nosuch", "web", "/echo")
    h.check(r.status == 404, "a site that does not exist gets 404 through hub A", r)

    # A TCP stream (extended CONNECT) through A: bytes both ways, half-close.
    c = Client(a.port, a.token, site="s1")
    c.pump(lambda: c.enable_connect is not None, 10, "hub A's SETTINGS")
    for classic in (False, True):
        kind = "classic" if classic else "extended"
        st = c.open("echo", classic=classic)
        st.send(b"hello across the hop\n")
        c.pump(lambda: len(st.data) >= 21 or st.done, 15, "the echo")
        h.check(st.status == 200 and bytes(st.data) == b"hello across the hop\n",
                "%s CONNECT through hub A: the TCP service's echo comes back" % kind,
                (st.status, bytes(st.data[:80])))
        st.send(b"", end=True)
        c.pump(lambda: st.done, 15, "the echo stream's end")
        h.check(st.ended and st.reset is None,
                "%s CONNECT: the user's END_STREAM reaches the service, its EOF comes back" % kind,
                (st.ended, st.reset))
    c.close()
    if wss is None:
        h.info("python3-websockets not installed: no WebSocket check")
    else:
        got = asyncio.run(ws_echo(a, "hello websocket across the hop"))
        h.check(got == "hello websocket across the hop",
                "a WebSocket (HTTP/1.1 upgrade) through hub A: the echo comes back", got)

    # The site leaves B: through A, 503 (A may still think it is on B: then
    # B answers that it is not there, and never sends the request on).
    site.proc.stop()
    r = a.proxy("s1", "web", "/echo")
    h.check(r.status == 503 and (r.json() or {}).get("error") == "site_offline",
            "the site gone from hub B: 503 site_offline through hub A", r)
    s1 = a.sites().get("s1", {})
    h.check(s1.get("online") is False and "hub_id" not in s1,
            "and hub A lists it offline (its session on B is closed)", s1)
    site.start(services, ["--ping-interval", "1"])
    h.check(b.wait_ready("s1") is not None, "the site is back on hub B")
    r = a.proxy("s1", "web", "/bytes/100000")
    h.check(r.status == 200 and r.body == direct.body, "and reached through hub A again", r)

    # Hub B's end of a link, opened by hand with hub A's key: it takes
    # proxied requests only, with the user's address from x-forwarded-for.
    pc = Client(b.port, a.token, alpn="tether-peer/1", cert=os.path.join(a.dir, "hub.crt"),
                key=os.path.join(a.dir, "hub.key"))
    api = pc.request("GET", "/v1/sites")
    px = pc.request("GET", "/v1/sites/s1/services/web/echo",
                    [("x-forwarded-for", "203.0.113.9")])
    pc.pump(lambda: api.done and px.done, 10, "hub B's answers on the peer link")
    h.check(api.status == 403, "on a peer link, hub B refuses an API call (403)",
            (api.status, bytes(api.data[:200])))
    hd = json.loads(bytes(px.data) or b"{}").get("headers", {})
    h.check(px.status == 200 and hd.get("x-forwarded-for") == "203.0.113.9",
            "and serves a proxied request, the user's address taken from x-forwarded-for",
            (px.status, hd))
    pc.close()
    h.check(a.proc.find(r"\bpeer_link_down\b") is None, "hub A's link stayed up throughout")

    # Hub B dies: the site fails over to A, which serves it itself.
    t0 = time.monotonic()
    b.proc.kill9()
    h.check(a.wait_ready("s1", timeout=FAILOVER_S + 5) is not None,
            "kill -9 of hub B: the site is back on hub A")
    h.info("failover to A: %.2f s" % (time.monotonic() - t0))
    r = a.proxy("s1", "web", "/bytes/100000")
    h.check(r.status == 200 and r.body == direct.body, "requests through hub A work again", r)
    hubs = {x.get("pin"): x for x in (a.curl("/v1/hubs").json() or {}).get("hubs", [])}
    h.check(hubs.get(b.pin, {}).get("link") == "down" and hubs.get(a.pin, {}).get("sites") == 1,
            "GET /v1/hubs on A: the link to the dead hub B is down, A holds the site", hubs)


if __name__ == "__main__":
    Harness.main("test_cluster_proxy", main, tools=("curl",))

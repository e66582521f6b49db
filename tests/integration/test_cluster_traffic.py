#!/usr/bin/env python3
# Integration: every kind of traffic across the hub-to-hub hop (streaming, flow control both ways, gRPC, trailers, WebSocket over HTTP/2, many TCP streams, cancellation).
# SPDX-License-Identifier: MIT
"""Hubs A and B of one cluster (PostgreSQL), the site s1 connected to B;
every user talks to hub A, which forwards over its peer link to B
(docs/scale-out.md §2a). Each part asserts what a hub that buffered,
blocked the link or lost a reset would get wrong:
  1. streaming: chunks written 200 ms apart reach HTTP/1.1 and HTTP/2 users
     one by one (each before the next is written);
  2. flow control: a 128 MiB download read slowly, then not at all, then
     fast (HTTP/1.1), a 64 MiB download read at a capped rate (HTTP/2), and
     64 MiB uploads (HTTP/1.1 and HTTP/2) to a service that stops reading
     for 2.5 s: hub A's, hub B's and the site's RSS grow by less than
     32 MiB, the bytes arrive whole, and another request passes meanwhile;
  3. gRPC (Debian's python3-grpcio, generic handlers of test_grpc.py):
     trailing metadata, an error status, server and lock-step bidirectional
     streaming, 8 MiB down, a deadline whose cancel reaches the service;
     HTTP trailers both ways (test_trailers.py's service);
  4. a WebSocket over HTTP/2 extended CONNECT (RFC 8441) through A;
  5. 20 TCP streams at once with distinct payloads, while another user's
     streams are reset and its connection cut with a TCP RST: all 20
     intact, the cut streams closed at the service, the link never down;
  6. cancellation: a download cut (HTTP/1.1 close, HTTP/2 RST_STREAM) and a
     request the service never answers, abandoned: hub B's streams_open
     for the site falls back and the service sees its request end;
  7. with both hubs' request and idle timeouts cut to 0.5-1 s, a WebSocket,
     a TCP stream and gRPC calls idle for longer go on (test_grpc.py's
     idle_calls: a bidirectional call idle 6 s, a late server stream).
The peer link never goes down."""
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Harness, Skip, free_port, import_grpc, load_sample_module,  # noqa: E402
                     tls_connect)
from bytestreams import Client, TcpService, echo, need_h2  # noqa: E402
from wsserver import WsServer, WsStream, websockets  # noqa: E402
from test_slow_reader import Http1Response, Sampler, wait_rss_settled  # noqa: E402
import test_trailers  # noqa: E402

grpc = import_grpc(__file__)

if grpc is not None:
    import test_grpc
if websockets is not None:
    from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

SITE = "s1"
BASE = "/v1/sites/%s/services" % SITE
# RSS growth bounds: 32 MiB for the user's hub and the site (as
# test_slow_reader.py: far below the transfer sizes), 12 MiB for hub B in
# the middle, which holds one stream window (1 MiB) of each direction plus
# buffers; a hub that took a transfer whole, or a widened window on the
# link (a 16 MiB lone-upload hold, hub/http/h2.c), grows by more.
LIMIT_KIB = 32 * 1024
RELAY_KIB = 12 * 1024
LIMIT_H2_UP_KIB = 56 * 1024
N_ITEMS, GAP_MS = 10, 200
DOWN = 128 << 20
DOWN_H2 = 64 << 20
UP = 64 << 20
HOLD_S = 2.5


# --- services ---

class SinkHandler(BaseHTTPRequestHandler):
    """POST /sink?hold=S: reads 1 MiB of the body, stops reading for S
    seconds, reads the rest; answers {"bytes", "sha256"}."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left > 0:
                    d = self.rfile.read(min(left, 65536))
                    if not d:
                        return
                    left -= len(d)
                    yield d
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            d = self.rfile.read1(min(left, 65536))
            if not d:
                return
            left -= len(d)
            yield d

    def do_POST(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        hold = float(q.get("hold", ["0"])[0])
        hs, n, held = hashlib.sha256(), 0, False
        for d in self._body():
            hs.update(d)
            n += len(d)
            if not held and n >= 1 << 20:
                held = True
                time.sleep(hold)
        out = json.dumps({"bytes": n, "sha256": hs.hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def serve(handler):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# --- 1. streaming ---

class Items:
    """The stream service's /chunks lines ("i T xxx...\\n", 1 KiB, T the
    CLOCK_MONOTONIC write time): (index, written, arrived) of each."""

    def __init__(self):
        self.buf = b""
        self.got = []
        self.bad = []

    def feed(self, data):
        now = time.monotonic()
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                i, t = line.split(b" ")[:2]
                if len(line) != 1023:
                    raise ValueError("%d bytes" % len(line))
                self.got.append((int(i), float(t), now))
            except ValueError as e:
                self.bad.append("%r: %s" % (line[:40], e))


def stream_h1(hub, path, items):
    s = tls_connect(hub.port, alpn=("http/1.1",), timeout=30)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer %s\r\n\r\n"
                   % (path, hub.token)).encode())
        resp = Http1Response(s)
        while True:
            d = resp.read(65536)
            if not d:
                return
            items.feed(d)
    finally:
        s.close()


def stream_h2(hub, path, items):
    c = Client(hub.port, hub.token, site=SITE)
    try:
        st = c.request("GET", path)
        seen = [0]

        def progress():
            if len(st.data) > seen[0]:
                items.feed(bytes(st.data[seen[0]:]))
                seen[0] = len(st.data)
            return st.done
        c.pump(progress, N_ITEMS * GAP_MS / 1000.0 + 20, "the chunk stream")
    finally:
        c.close()


def part_streaming(h, a, svc_port):
    path = "%s/live/chunks?n=%d&gap=%d" % (BASE, N_ITEMS, GAP_MS)
    runs = {"HTTP/1.1": (stream_h1, Items()), "HTTP/2": (stream_h2, Items())}
    errors = []

    def run(fn, items):
        try:
            fn(a, path, items)
        except Exception as e:  # noqa: BLE001 (a check below reports it)
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=v, daemon=True) for v in runs.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(N_ITEMS * GAP_MS / 1000.0 + 30)
    h.check(not errors, "the streaming readers through hub A finished", errors)
    for name, (_, items) in runs.items():
        idx = [i for i, _, _ in items.got]
        h.check(idx == list(range(N_ITEMS)) and not items.bad,
                "%s via A: all %d chunks whole and in order" % (name, N_ITEMS),
                {"indices": idx, "bad": items.bad[:3]})
        if len(items.got) < N_ITEMS:
            continue
        late = [i for (i, _, arr), (_, wnext, _) in zip(items.got, items.got[1:]) if arr >= wnext]
        h.check(len(late) <= 1, "%s via A: each chunk reached the user before the next was "
                "written (neither hub buffers the stream)" % name, {"late": late})
        first_arr, last_w = items.got[0][2], items.got[-1][1]
        lat = sorted((arr - w) * 1000 for _, w, arr in items.got)
        h.info("%s via A: write-to-arrival min %.1f p50 %.1f max %.1f ms; first chunk %.2f s "
               "before the last was written" % (name, lat[0], lat[len(lat) // 2], lat[-1],
                                                last_w - first_arr))
        h.check(last_w - first_arr > (N_ITEMS - 2) * GAP_MS / 1000.0 / 2,
                "%s via A: the first chunk arrived long before the last was written" % name,
                last_w - first_arr)


# --- 2. flow control ---

def rss_growth(h, what, sampler, base, procs, limits):
    """Checks each process's RSS peak over its settled base against
    limits[name] (KiB); returns {name: growth KiB}."""
    out = {}
    for p, b0 in zip(procs, base):
        peak = sampler.peak(p.name)
        if peak is None:
            h.check(False, "%s: RSS of %s sampled" % (what, p.name))
            continue
        out[p.name] = peak - b0
        lim = limits[p.name]
        h.info("%s: %s RSS peak %d KiB (+%d KiB)" % (what, p.name, peak, peak - b0))
        h.check(peak - b0 < lim, "%s: %s RSS growth under %d MiB (+%.1f MiB)"
                % (what, p.name, lim // 1024, (peak - b0) / 1024.0))
    return out


def part_flow(h, a, b, site):
    sample = load_sample_module()
    procs = [a.proc, b.proc, site.proc]
    limits = {a.proc.name: LIMIT_KIB, b.proc.name: RELAY_KIB, site.proc.name: LIMIT_KIB}
    r = a.proxy(SITE, "web", "/bytes/%d" % (8 << 20))
    h.check(r.status == 200 and len(r.body) == 8 << 20, "warm-up: 8 MiB through hub A", r.status)

    # A slow HTTP/1.1 reader: 64 KiB per 10 ms for 2 s, nothing for 2 s,
    # then the rest at full speed.
    base = wait_rss_settled(h, procs)
    sampler = Sampler(procs)
    sampler.start()
    s = tls_connect(a.port, alpn=("http/1.1",), timeout=30)
    digest, total, mid = hashlib.sha256(), 0, None
    try:
        s.sendall(("GET %s/web/bytes/%d HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer %s\r\n"
                   "\r\n" % (BASE, DOWN, a.token)).encode())
        resp = Http1Response(s)
        h.check(resp.status == 200, "the %d MiB GET through hub A answers 200" % (DOWN >> 20),
                resp.status)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            d = resp.read(65536)
            if not d:
                break
            digest.update(d)
            total += len(d)
            time.sleep(0.01)
        time.sleep(1.0)
        mid = a.proxy(SITE, "web", "/echo?during=stall", timeout=10)
        time.sleep(1.0)
        h.info("slow phase read %.1f MB; then the rest at full speed" % (total / 1e6))
        t1 = time.monotonic()
        while True:
            d = resp.read(1 << 20)
            if not d:
                break
            digest.update(d)
            total += len(d)
        h.info("the rest: %.1f MB/s" % ((total / 1e6) / max(time.monotonic() - t1, 1e-3)))
    finally:
        s.close()
        sampler.stop_ev.set()
        sampler.join(5)
    h.check(mid is not None and mid.status == 200 and mid.elapsed < 3.0,
            "while the reader stalls, another request through hub A is served (%.2f s)"
            % (mid.elapsed if mid else -1), mid)
    h.check(total == DOWN and digest.hexdigest() == sample.pattern_sha256(DOWN),
            "slow HTTP/1.1 reader via A: all %d MiB, bytes equal to the pattern" % (DOWN >> 20),
            total)
    rss_growth(h, "slow download via A", sampler, base, procs, limits)

    # An HTTP/2 reader at a capped rate.
    base = wait_rss_settled(h, procs)
    sampler = Sampler(procs)
    sampler.start()
    try:
        r = a.proxy(SITE, "web", "/bytes/%d" % DOWN_H2, http="2", out_file="/dev/null",
                    timeout=60, extra=["--limit-rate", str(24 << 20)])
    finally:
        sampler.stop_ev.set()
        sampler.join(5)
    h.check(r.status == 200 and r.version == "2" and r.size == DOWN_H2,
            "HTTP/2 reader capped at 24 MiB/s via A: all %d MiB" % (DOWN_H2 >> 20), r)
    rss_growth(h, "capped HTTP/2 download via A", sampler, base, procs, limits)

    # Uploads to a service that stops reading after 1 MiB for HOLD_S.
    data = os.urandom(UP)
    want = hashlib.sha256(data).hexdigest()
    path = h.path("up.bin")
    with open(path, "wb") as f:
        f.write(data)
    del data
    # Uploads: through A over HTTP/1.1 and HTTP/2, and last the HTTP/2 one
    # straight to B, the single-hub path as a reference for hub A's share.
    grown = {}
    for hub, http in ((a, "1.1"), (a, "2"), (b, "2")):
        what = "HTTP/%s upload via %s" % (http, "A" if hub is a else "B (no hop)")
        base = wait_rss_settled(h, procs)
        sampler = Sampler(procs)
        sampler.start()
        res = {}
        up = threading.Thread(target=lambda: res.setdefault("r", hub.proxy(
            SITE, "sink", "/sink?hold=%s" % HOLD_S, method="POST", data_file=path, http=http,
            timeout=60)), daemon=True)
        try:
            up.start()
            time.sleep(HOLD_S / 2)
            mid = hub.proxy(SITE, "web", "/echo?during=upload", timeout=10)
            up.join(70)
        finally:
            sampler.stop_ev.set()
            sampler.join(5)
        r = res.get("r")
        h.check(mid.status == 200 and mid.elapsed < 3.0, "%s: while the upload waits for the "
                "service, another request is served (%.2f s)" % (what, mid.elapsed), mid)
        got = (r.json() if r else None) or {}
        h.info("%s of %d MiB: %.2f s" % (what, UP >> 20, r.elapsed if r else -1))
        h.check(r is not None and r.status == 200 and got.get("bytes") == UP and
                got.get("sha256") == want, "%s to a service that pauses: %d MiB whole"
                % (what, UP >> 20), r)
        h.check(r is not None and r.elapsed >= HOLD_S,
                "%s: the service's pause held the upload back (%.2f s)"
                % (what, r.elapsed if r else -1))
        # The user's hub: an HTTP/2 upload alone on its connection may take
        # the 16 MiB window of the lone-upload hold (hub/http/h2.c), held in
        # a buffer that doubles as it grows: 32 MiB of storage, and the
        # 16 MiB it replaced until the allocator gives it back (56 MiB stays
        # below the 64 MiB upload). B is the user's hub in the last round.
        user_lim = LIMIT_KIB if http == "1.1" else LIMIT_H2_UP_KIB
        lim = dict(limits, **{hub.proc.name: user_lim})
        grown["direct" if hub is b else http] = rss_growth(h, what + ", service paused",
                                                           sampler, base, procs, lim)
    # A figure, not a check: the user's hub's growth for the same HTTP/2
    # upload over the hop and without it. Either may reach 32 MiB: the
    # upload buffer slides through its storage and doubles when the 16 MiB
    # window fills while some of it was already sent on.
    h.info("HTTP/2 upload, the user's hub's RSS growth: +%.1f MiB via A, +%.1f MiB via B "
           "(no hop)" % (grown["2"].get(a.proc.name, -1) / 1024.0,
                         grown["direct"].get(b.proc.name, -1) / 1024.0))


# --- 3. gRPC and trailers ---

def grpc_channel(a):
    """A new gRPC channel (one connection) to hub A, its certificate the root."""
    with open(os.path.join(a.dir, "hub.crt"), "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel(a.addr, creds,
                               options=(("grpc.ssl_target_name_override", "127.0.0.1"),))


def grpc_method(name):
    return "%s/grpc/test.Echo/%s" % (BASE, name)


def part_grpc(h, a, gsvc):
    chan = grpc_channel(a)
    meta = (("authorization", "Bearer " + a.token), ("x-request-tag", "hop-7"))
    m = grpc_method
    try:
        resp, call = chan.unary_unary(m("Unary")).with_call(b"hop", metadata=meta, timeout=20)
        tm = dict(call.trailing_metadata())
        h.check(resp == b"echo:hop" and call.code() == grpc.StatusCode.OK,
                "gRPC unary call through hub A: answer and status OK", (resp, call.code()))
        h.check(gsvc.seen_meta.get("x-request-tag") == "hop-7" and
                "authorization" not in gsvc.seen_meta,
                "gRPC: request metadata crosses the hop, the token does not", gsvc.seen_meta)
        h.check(tm.get("x-trailer-one") == "first" and tm.get("x-count-bin") == b"\x00\x01\xff",
                "gRPC: trailing metadata (text and binary) crosses the hop", tm)
        try:
            chan.unary_unary(m("Fail"))(b"rec-9", metadata=meta, timeout=20)
            err = None
        except grpc.RpcError as e:
            err = (e.code(), e.details())
        h.check(err == (grpc.StatusCode.NOT_FOUND, "no such record: rec-9"),
                "gRPC: an error status and its message (grpc-status, grpc-message trailers) "
                "cross the hop", err)
        got = list(chan.unary_stream(m("ServerStream"))(b"1000", metadata=meta, timeout=30))
        h.check(len(got) == 1000 and got[-1] == b"msg-999",
                "gRPC server streaming via A: 1000 messages in order", len(got))
        answers, turn = [], threading.Semaphore(1)

        def requests():
            for i in range(300):
                if not turn.acquire(timeout=20):
                    return
                yield b"m%d" % i
        call = chan.stream_stream(m("Bidi"))(requests(), metadata=meta, timeout=60)
        for x in call:
            answers.append(x)
            turn.release()
        h.check(answers == [b"re:m%d" % i for i in range(300)],
                "gRPC bidirectional streaming via A in lock step: 300 round trips", len(answers))
        hd, total = hashlib.sha256(), 0
        for msg in chan.unary_stream(m("BigDown"))(b"8 1048576", metadata=meta, timeout=60):
            hd.update(msg)
            total += len(msg)
        want = hashlib.sha256(b"".join(bytes([i % 251]) * (1 << 20) for i in range(8)))
        h.check(total == 8 << 20 and hd.hexdigest() == want.hexdigest(),
                "gRPC: 8 MiB down in 1 MiB messages via A, hash equal", total)
        t0 = time.monotonic()
        try:
            chan.unary_unary(m("Slow"))(b"", metadata=meta, timeout=0.5)
            code = None
        except grpc.RpcError as e:
            code = e.code()
        h.check(code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 4,
                "gRPC: a deadline expires through hub A", code)
        h.check(gsvc.cancelled.wait(10),
                "gRPC: the cancel crosses the hop and reaches the service")
    finally:
        chan.close()


def part_trailers(h, a):
    base = "%s/trl" % BASE
    auth = "Bearer " + a.token
    raw = test_trailers.h1_exchange(a, ("GET %s/resp HTTP/1.1\r\nHost: hub\r\nAuthorization: "
                                        "%s\r\nConnection: close\r\n\r\n" % (base, auth)).encode())
    head, _, rest = raw.partition(b"\r\n\r\n")
    import io
    body, trl = test_trailers.read_chunked(io.BytesIO(rest)) if head.startswith(
        b"HTTP/1.1 200") else (None, [])
    h.check(body == b"hello world" and ("x-checksum", "abc123") in trl,
            "HTTP/1.1 user via A: the response's trailer in the last chunk", raw[-200:])
    status, _, rb, rt = test_trailers.h2_exchange(
        a, [(":method", "GET"), (":scheme", "https"), (":authority", "hub"),
            (":path", base + "/resp"), ("authorization", auth)])
    h.check(status == "200" and rb == b"hello world" and (rt or {}).get("x-checksum") == "abc123"
            and "keep-alive" not in (rt or {}),
            "HTTP/2 user via A: the response's trailers in a trailing HEADERS frame", (status, rt))
    status, _, rb, _ = test_trailers.h2_exchange(
        a, [(":method", "POST"), (":scheme", "https"), (":authority", "hub"),
            (":path", base + "/echo"), ("authorization", auth), ("te", "trailers")],
        body=b"abc", trailers=[("x-req-sum", "s1"), ("x-tether-user", "evil")])
    got = json.loads(rb) if status == "200" else {}
    tr = dict(got.get("trailers", []))
    h.check(got.get("body") == "abc" and tr.get("x-req-sum") == "s1" and
            "x-tether-user" not in tr,
            "HTTP/2 user via A: request trailers reach the service, reserved names dropped", got)
    raw = test_trailers.h1_exchange(a, ("POST %s/echo HTTP/1.1\r\nHost: hub\r\nAuthorization: %s"
                                        "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                                        "\r\n4\r\nwxyz\r\n0\r\nX-Req-Sum: s2\r\n\r\n"
                                        % (base, auth)).encode())
    head, _, rest = raw.partition(b"\r\n\r\n")
    got = json.loads(rest) if head.startswith(b"HTTP/1.1 200") else {}
    h.check(got.get("body") == "wxyz" and dict(got.get("trailers", [])).get("x-req-sum") == "s2",
            "HTTP/1.1 user via A: chunked request trailers reach the service", raw[-300:])


# --- 4. WebSocket over HTTP/2 ---

def part_ws_h2(h, a, wss):
    c = Client(a.port, a.token, site=SITE)
    try:
        c.pump(lambda: c.enable_connect is not None, 10, "hub A's SETTINGS")
        h.check(c.enable_connect == 1, "hub A offers extended CONNECT (RFC 8441)",
                c.enable_connect)
        w = WsStream(c, path="/hop-h2")
        c.pump(lambda: w.st.status is not None or w.st.done, 15, "the upgrade's answer")
        h.check(w.st.status == 200 and w.st.headers.get("sec-websocket-protocol") == "chat",
                "a WebSocket over HTTP/2 through hub A: 200 with the service's subprotocol",
                (w.st.status, w.st.headers, w.st.reset))
        if w.st.status != 200:
            return
        w.send(TextMessage(data="hello h2 websocket across the hop"))
        ev = w.wait(TextMessage)
        h.check(ev is not None and ev.data == "hello h2 websocket across the hop",
                "WebSocket over HTTP/2 via A: a text message comes back", ev)
        w.send(Ping(payload=b"hop"))
        ev = w.wait(Pong)
        h.check(ev is not None and bytes(ev.payload) == b"hop",
                "WebSocket over HTTP/2 via A: ping and pong", ev)
        blob = os.urandom(4 << 20)
        w.send(BytesMessage(data=blob))
        ev = w.wait(BytesMessage, 30)
        h.check(ev is not None and ev.data == blob,
                "WebSocket over HTTP/2 via A: a 4 MiB binary message comes back whole",
                None if ev is None else len(ev.data))
        # The user closes: the service answers the close frame and ends its
        # side; the user ends its side in turn (the server waits for it).
        w.send(CloseConnection(code=4001, reason="bye across the hop"))
        ev = w.wait(CloseConnection)
        h.check(ev is not None and ev.code == 4001, "WebSocket over HTTP/2 via A: the close "
                "code 4001 reaches the service and its echo comes back", ev)
        w.st.send(b"", end=True)
        c.pump(lambda: w.st.done, 15, "the WebSocket stream's end")
        h.check(w.st.ended and w.st.reset is None, "the WebSocket stream ends cleanly",
                (w.st.ended, w.st.reset))
        h.check(h.wait_until(lambda: ("/ws/hop-h2", 4001) in wss.closes, 5),
                "the service saw close code 4001 and its connection closed", wss.closes)
    finally:
        c.close()


# --- 5. many TCP streams ---

def part_tcp(h, a, tcp):
    n, half = 20, 128 << 10
    c = Client(a.port, a.token, site=SITE)
    payloads = [os.urandom(2 * half) for _ in range(n)]
    streams = [c.open("echo") for _ in range(n)]
    for st, p in zip(streams, payloads):
        st.send(p[:half])
    c.pump(lambda: all(len(st.data) >= half or st.done for st in streams), 30,
           "the first halves' echoes")
    h.check(tcp.open_now() == n, "%d TCP streams through hub A, each its own connection at "
            "the service" % n, tcp.open_now())

    # Another user's 3 streams, mid-transfer: one reset, then its connection
    # cut with a TCP RST (no GOAWAY, no close_notify).
    c2 = Client(a.port, a.token, site=SITE)
    cut = [c2.open("echo") for _ in range(3)]
    for st in cut:
        st.send(os.urandom(512 << 10))
    c2.pump(lambda: all(st.received >= 64 << 10 for st in cut), 30, "the other user's echoes")
    c2.c.reset_stream(cut[0].sid, error_code=8)
    c2.pump(lambda: True, 5, "the reset sent")
    c2.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c2.close()
    left = h.wait_until(lambda: tcp.open_now() == n, 10)
    h.check(left, "the reset and the cut user's streams are closed at the service, the %d "
            "others stay open" % n, tcp.open_now())

    for st, p in zip(streams, payloads):
        st.send(p[half:], end=True)
    c.pump(lambda: all(st.done for st in streams), 60, "all echoes and their ends")
    bad = [i for i, (st, p) in enumerate(zip(streams, payloads))
           if bytes(st.data) != p or not st.ended or st.reset is not None]
    h.check(not bad, "%d concurrent TCP streams via A: every echo intact and ended" % n, bad)
    c.close()
    h.check(h.wait_until(lambda: tcp.open_now() == 0, 10), "then none is left open at the "
            "service", tcp.open_now())


# --- 6. cancellation ---

def streams_open(b):
    return (b.sites().get(SITE) or {}).get("streams_open")


def part_cancel(h, a, b, svc):
    base = streams_open(b)
    inflight0 = (svc.stats() or {}).get("inflight")
    h.info("hub B's streams_open for the site at rest: %s" % base)
    big = "/bytes/%d" % (1 << 40)

    def settled(what):
        ok = h.wait_until(lambda: streams_open(b) == base and
                          (svc.stats() or {}).get("inflight") == inflight0, 10)
        h.check(ok, "%s: hub B's stream to the site ends (streams_open back to %s) and the "
                "service's request ends" % (what, base),
                (streams_open(b), svc.stats()))

    # HTTP/1.1: the user closes its connection mid-download.
    s = tls_connect(a.port, alpn=("http/1.1",), timeout=30)
    s.sendall(("GET %s/web%s HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer %s\r\n\r\n"
               % (BASE, big, a.token)).encode())
    resp = Http1Response(s)
    got = 0
    while got < 1 << 20:
        got += len(resp.read(65536))
    h.check(h.wait_until(lambda: streams_open(b) == base + 1, 10),
            "mid-download through A, hub B counts the stream open", streams_open(b))
    s.close()
    settled("HTTP/1.1 user closes mid-download via A")

    # HTTP/2: the user resets the stream and keeps its connection.
    c = Client(a.port, a.token, site=SITE)
    st = c.request("GET", "%s/web%s" % (BASE, big))
    c.pump(lambda: st.received >= 1 << 20 or st.done, 20, "1 MiB of the download")
    c.c.reset_stream(st.sid, error_code=8)
    c.pump(lambda: True, 5, "the reset sent")
    settled("HTTP/2 user resets the stream (CANCEL) mid-download via A")
    ok = c.request("GET", "%s/web/healthz" % BASE)
    c.pump(lambda: ok.done, 10, "a request after the reset")
    h.check(ok.status == 200 and bytes(ok.data).strip() == b"ok",
            "the user's connection to A serves the next request", (ok.status, bytes(ok.data)))
    c.close()

    # A request the service never answers, abandoned by the user.
    s = tls_connect(a.port, alpn=("http/1.1",), timeout=30)
    s.sendall(("GET %s/web/hang HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer %s\r\n\r\n"
               % (BASE, a.token)).encode())
    h.check(h.wait_until(lambda: (svc.stats() or {}).get("inflight") == inflight0 + 1, 10),
            "a request the service holds, through A", svc.stats())
    s.close()
    settled("the user abandons an unanswered request via A")


# --- 7. long-lived streams idle ---

def part_idle(h, a, b):
    """With request_timeout and request_body_timeout 1 s and idle_timeout
    0.5 s on both hubs, long-lived streams idle across the hop go on."""
    short = dict(request_timeout="1", request_body_timeout="1", idle_timeout="0.5")
    b.reload(**short)
    a.reload(**short)
    c = Client(a.port, a.token, site=SITE)
    try:
        w = WsStream(c, path="/idle")
        st = c.open("echo")
        c.pump(lambda: (w.st.status is not None or w.st.done) and
               (st.status is not None or st.done), 15, "the two streams' answers")
        t0 = time.monotonic()
        c.pump(lambda: time.monotonic() - t0 > 3.0 or w.st.done or st.done, 10,
               "3 s of idleness")
        w.send(TextMessage(data="after 3 s idle"))
        st.send(b"after 3 s idle\n")
        ev = w.wait(TextMessage)
        c.pump(lambda: len(st.data) >= 15 or st.done, 10, "the TCP echo")
        h.check(ev is not None and ev.data == "after 3 s idle" and not w.st.done,
                "a WebSocket (HTTP/2) through hub A idle for 3 s goes on (both hubs: "
                "request_timeout 1 s, request_body_timeout 1 s, idle_timeout 0.5 s)",
                (ev, w.st.reset))
        h.check(bytes(st.data) == b"after 3 s idle\n" and not st.done,
                "a TCP stream through hub A idle for 3 s goes on", (bytes(st.data), st.reset))
    finally:
        c.close()
    meta = (("authorization", "Bearer " + a.token),)
    test_grpc.idle_calls(h, a, lambda: grpc_channel(a), grpc_method, meta)


def main(h):
    h.pg_only("a cluster is several hubs on one PostgreSQL database")
    need_h2()
    if grpc is None:
        raise Skip("python3-grpcio is not installed")
    if websockets is None:
        raise Skip("python3-websockets / python3-wsproto not installed (deploy/setup.sh)")
    t_start = time.monotonic()
    svc = h.service("svc-s1", site_name=SITE)
    live_port = free_port()
    live = h.spawn("stream-svc", [sys.executable, os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "stream_service.py"), str(live_port)])
    live.wait_log(r"^listening %d$" % live_port, 15)
    sink = serve(SinkHandler)
    trl = test_trailers.Server(("127.0.0.1", 0), test_trailers.Handler)
    threading.Thread(target=trl.serve_forever, daemon=True).start()
    gsvc = test_grpc.EchoService()
    gserver, gport = test_grpc.start_server(gsvc)
    tcp = TcpService(echo)
    wss = WsServer()
    services = {
        "web": svc.url, "live": "http://127.0.0.1:%d" % live_port,
        "sink": "http://127.0.0.1:%d" % sink.server_address[1],
        "trl": "http://127.0.0.1:%d" % trl.server_address[1],
        "grpc": "h2c://127.0.0.1:%d" % gport, "echo": tcp.url, "ws": wss.url,
    }
    try:
        a, b, site = h.cluster_pair(SITE, services)
        parts = [("streaming", lambda: part_streaming(h, a, live_port)),
                 ("flow control", lambda: part_flow(h, a, b, site)),
                 ("gRPC", lambda: part_grpc(h, a, gsvc)),
                 ("trailers", lambda: part_trailers(h, a)),
                 ("WebSocket over HTTP/2", lambda: part_ws_h2(h, a, wss)),
                 ("TCP streams", lambda: part_tcp(h, a, tcp)),
                 ("cancellation", lambda: part_cancel(h, a, b, svc)),
                 ("long-lived streams idle", lambda: part_idle(h, a, b))]
        for name, fn in parts:
            t0 = time.monotonic()
            fn()
            h.info("part %s: %.1f s" % (name, time.monotonic() - t0))
        h.check(a.proc.find(r"\bpeer_link_down\b") is None and
                b.proc.find(r"\bpeer_link_down\b") is None,
                "the peer link stayed up throughout (no peer_link_down on A or B)")
        h.check(a.peer_links().get("out") == 1 and b.peer_links().get("in") == 1,
                "and still counts one link each way in /metrics", (a.peer_links(),
                                                                     b.peer_links()))
        h.check(a.proc.alive() and b.proc.alive() and site.proc.alive(),
                "hubs and site still running")
        h.info("all parts: %.1f s" % (time.monotonic() - t_start))
    finally:
        gserver.stop(0)
        sink.shutdown()
        trl.shutdown()


if __name__ == "__main__":
    Harness.main("test_cluster_traffic", main)

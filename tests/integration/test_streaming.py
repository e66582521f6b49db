#!/usr/bin/env python3
# Streamed responses pass through unbuffered: SSE events and chunks reach HTTP/1.1 and HTTP/2 users one by one.
# SPDX-License-Identifier: MIT
"""A service (stream_service.py, its own process) writes one server-sent
event every 200 ms, and a chunked octet stream whose chunks are 200 ms apart.
Users read them through the hub: an HTTP/1.1 user (raw TLS, one connection
per response) and an HTTP/2 user (python3-h2, both responses as two streams
of one connection). Every event and chunk carries the CLOCK_MONOTONIC time it
was written; the reader notes when it arrived.

Checks, per stream:
- everything arrives, whole and in order;
- one by one: item i reaches the user before item i+1 is written (a proxy
  that buffers or batches fails this for nearly every item; one noisy stall
  on the shared machine is tolerated per ten items);
- the write-to-arrival p50 and p90 stay within 20 ms plus the p90 of a
  baseline read in the same run straight from the service (plain TCP, same
  reader), so a loaded machine widens the bound instead of failing the test.
  20 ms is the issue's promise; Nagle meeting a delayed ACK costs 40 ms.
  The ASan build uses the same bound: the per-event work is far below it.
The min/p50/p90/max of each is printed.

The HTTP/2 user credits every DATA frame at once, as eager clients do, so
it writes after each read and its TCP delays its ACKs. That is the setting
of issue 13's report: a build whose sockets lack TCP_NODELAY and whose hub
writes an event as two segments gives this user each event 40-46 ms late
(p50 43 ms) while HTTP/1.1 users stay under 2 ms, and this test fails."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Fatal, Harness, Skip, debian_import, free_port, tls_connect  # noqa: E402

if debian_import("h2.config", "h2.connection", "h2.events"):
    import h2.config
    import h2.connection
    import h2.events
else:
    h2 = None

N = 20          # items per stream
GAP_MS = 200    # between two writes
BOUND_MS = 20.0  # the promise: written -> at the user


class Items:
    """Splits a byte stream into items (SSE events end with a blank line,
    chunk lines with a newline); notes each one's write time, index and
    arrival time."""

    def __init__(self, kind):
        self.sep = b"\n\n" if kind == "sse" else b"\n"
        self.kind = kind
        self.buf = b""
        self.got = []  # (index, written, arrived)
        self.bad = []

    def feed(self, data):
        now = time.monotonic()
        self.buf += data
        while self.sep in self.buf:
            item, self.buf = self.buf.split(self.sep, 1)
            try:
                if self.kind == "sse":
                    f = dict(line.split(b": ", 1) for line in item.split(b"\n"))
                    i, t = int(f[b"id"]), float(f[b"data"])
                else:
                    i, t = item.split(b" ")[:2]
                    i, t = int(i), float(t)
                    if len(item) != 1023:
                        raise ValueError("chunk %d is %d bytes" % (i, len(item)))
            except (ValueError, KeyError) as e:
                self.bad.append("%r: %s" % (item[:60], e))
                continue
            self.got.append((i, t, now))


class Dechunk:
    """Incremental HTTP/1.1 chunked decoder (sizes bounded, no trailers)."""

    def __init__(self, sink):
        self.sink = sink
        self.buf = b""
        self.left = 0  # >0: payload bytes due; -1: the CRLF after a payload
        self.done = False

    def feed(self, data):
        self.buf += data
        while self.buf and not self.done:
            if self.left > 0:
                take = self.buf[:self.left]
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                self.sink(take)
                if self.left == 0:
                    self.left = -1
            elif self.left == -1:
                if len(self.buf) < 2:
                    return
                if self.buf[:2] != b"\r\n":
                    raise Fatal("bad chunk end %r" % self.buf[:8])
                self.buf = self.buf[2:]
                self.left = 0
            else:
                if b"\r\n" not in self.buf:
                    if len(self.buf) > 64:
                        raise Fatal("chunk size line too long")
                    return
                line, self.buf = self.buf.split(b"\r\n", 1)
                self.left = int(line.split(b";")[0], 16)
                if self.left == 0:
                    self.done = True


def read_h1(sock, path, token, items, heads):
    """GET path over HTTP/1.1 on sock; the body goes to items."""
    req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path
    if token:
        req += "Authorization: Bearer %s\r\n" % token
    sock.sendall(req.encode() + b"\r\n")
    head, feed, dc = b"", None, None
    try:
        while len(items.got) < N and not (dc and dc.done):
            d = sock.recv(65536)
            if not d:
                break
            if feed is None:
                head += d
                if b"\r\n\r\n" not in head:
                    continue
                head, d = head.split(b"\r\n\r\n", 1)
                heads.append(head.decode("latin-1"))
                if b"transfer-encoding: chunked" in head.lower():
                    dc = Dechunk(items.feed)
                    feed = dc.feed
                else:
                    feed = items.feed
            feed(d)
    finally:
        sock.close()


def read_h2(port, paths, token, items_list, heads):
    """Both paths as streams of one HTTP/2 connection."""
    s = tls_connect(port, alpn=("h2",))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    by_sid = {}
    for path, items in zip(paths, items_list):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "https"),
                             (":authority", "127.0.0.1"), ("authorization", "Bearer " + token)],
                       end_stream=True)
        by_sid[sid] = items
    s.sendall(c.data_to_send())
    ended = set()
    try:
        while len(ended) < len(by_sid):
            d = s.recv(65536)
            if not d:
                break
            for e in c.receive_data(d):
                if isinstance(e, h2.events.ResponseReceived):
                    heads.append(dict((k.decode(), v.decode()) for k, v in e.headers))
                elif isinstance(e, h2.events.DataReceived):
                    by_sid[e.stream_id].feed(e.data)
                    # Credit every DATA frame at once, as eager clients do:
                    # the user then writes after each read, which puts its
                    # TCP into delayed-ACK (interactive) mode, the condition
                    # under which a hop's Nagle costs 40 ms per event.
                    n = e.flow_controlled_length
                    if n > 0:
                        c.increment_flow_control_window(n)
                        if e.stream_ended is None:
                            c.increment_flow_control_window(n, e.stream_id)
                elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended.add(e.stream_id)
            out = c.data_to_send()
            if out:
                s.sendall(out)
    finally:
        s.close()


def pct(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))]


def summary(items):
    lat = sorted((a - w) * 1000 for _, w, a in items.got)
    if not lat:
        return None
    return {"n": len(lat), "min": lat[0], "p50": pct(lat, 0.5), "p90": pct(lat, 0.9),
            "max": lat[-1]}


def fmt(s):
    return "n=%d min=%.2f p50=%.2f p90=%.2f max=%.2f ms" % (
        s["n"], s["min"], s["p50"], s["p90"], s["max"])


def main(h):
    if h2 is None:
        raise Skip("python3-h2 not installed (deploy/setup.sh)")
    port = free_port()
    svc = h.spawn("stream-svc", [sys.executable, os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "stream_service.py"), str(port)])
    svc.wait_log(r"^listening %d$" % port, 15)
    hub = h.hub()
    hub.init()
    hub.start()
    token = hub.site_add("s1")
    site = h.site("s1", hub)
    site.enroll(token)
    site.start({"live": "http://127.0.0.1:%d" % port})
    if hub.wait_ready("s1", 15) is None:
        raise Fatal("site s1 not online with its service")

    q = "?n=%d&gap=%d" % (N, GAP_MS)
    via = "/v1/sites/s1/services/live"
    streams = {  # name -> Items
        "direct sse": Items("sse"), "h1 sse": Items("sse"), "h2 sse": Items("sse"),
        "h1 chunks": Items("chunks"), "h2 chunks": Items("chunks"),
    }
    heads = {"h1 sse": [], "h1 chunks": [], "h2": [], "direct": []}
    jobs = [
        (read_h1, (socket.create_connection(("127.0.0.1", port)), "/sse" + q, None,
                   streams["direct sse"], heads["direct"])),
        (read_h1, (tls_connect(hub.port), via + "/sse" + q, hub.token, streams["h1 sse"],
                   heads["h1 sse"])),
        (read_h1, (tls_connect(hub.port), via + "/chunks" + q, hub.token,
                   streams["h1 chunks"], heads["h1 chunks"])),
        (read_h2, (hub.port, [via + "/sse" + q, via + "/chunks" + q], hub.token,
                   [streams["h2 sse"], streams["h2 chunks"]], heads["h2"])),
    ]
    errors = []

    def run(fn, args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 (reported as a check below)
            errors.append("%s: %r" % (fn.__name__, e))

    threads = []
    for k, (fn, args) in enumerate(jobs):
        # Staggered by 37 ms so the four writers do not wake together.
        t = threading.Thread(target=run, args=(fn, args), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(0.037)
    for t in threads:
        t.join(N * GAP_MS / 1000.0 + 30)
    h.check(not errors and not any(t.is_alive() for t in threads),
            "every reader finished", errors)

    h.check(any("text/event-stream" in x for x in heads["h1 sse"]),
            "HTTP/1.1 user: the event stream's content-type passed", heads["h1 sse"])
    h.check(any(x.get("content-type") == "text/event-stream" for x in heads["h2"]),
            "HTTP/2 user: the event stream's content-type passed", heads["h2"])

    base = summary(streams["direct sse"])
    h.check(base is not None and base["n"] == N, "baseline read straight from the service",
            base)
    if base is None:
        return
    bound = BOUND_MS + base["p90"]
    h.info("write-to-arrival %-10s %s" % ("direct sse", fmt(base)))
    for name, items in streams.items():
        if name == "direct sse":
            continue
        s = summary(items)
        idx = [i for i, _, _ in items.got]
        h.check(idx == list(range(N)) and not items.bad,
                "%s: all %d items arrived whole and in order" % (name, N),
                {"indices": idx, "bad": items.bad[:3]})
        if s is None or len(items.got) < 2:
            continue
        h.info("write-to-arrival %-10s %s" % (name, fmt(s)))
        # One by one: item i is at the user before item i+1 was written.
        late = [i for (i, _, arr), (_, wnext, _) in zip(items.got, items.got[1:]) if arr >= wnext]
        h.check(len(late) <= max(1, (N - 1) // 10),
                "%s: each item reached the user before the next was written (not batched)" % name,
                {"arrived after the next write": late})
        h.check(s["p50"] <= bound and s["p90"] <= bound,
                "%s: p50 and p90 write-to-arrival within %.1f ms (20 ms + baseline p90)" %
                (name, bound), fmt(s))


Harness.main("streaming", main)

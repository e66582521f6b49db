#!/usr/bin/env python3
# Sample local HTTP service for the tether quickstart and the integration tests.
# SPDX-License-Identifier: MIT
"""A small HTTP/1.1 service to put behind tether-site (stdlib only).

Usage: sample-service.py [--name SITE] [--bind ADDR] [--quiet] PORT

Prints "listening PORT" on stdout once it accepts connections (PORT 0 picks a
free port and prints the one chosen).

Routes:
  GET  /healthz              200 "ok"
  GET  /bytes/N[?rate=B]     N bytes of a deterministic pattern (see pattern()),
                             Content-Length, written in 64 KiB chunks; rate caps
                             the speed in bytes per second
  POST|PUT /sha256           reads the body (Content-Length or chunked) and
                             replies {"sha256", "bytes", "method"}
  ANY  /echo[/...]           JSON: method, path, query, headers, body_length,
                             body_sha256 (to see what a proxy forwarded)
  GET  /slow?ms=N            answers after N ms: {"ms", "query"}
  GET  /hang                 never answers (until the client goes away)
  ANY  /status/N             answers with status N and a JSON body
  GET|POST /count[?site=S]   {"site", "count"}: the federated-query demo; site
                             is --name (or ?site= when no --name was given),
                             count a fixed number per site
  GET  /stats[?reset=1]      {"inflight", "max_inflight", "requests", "by_route"}
                             (by_route counts requests per first path segment;
                             reset=1 restarts max_inflight after answering)
  ANY  /tally/KEY[?ms.SITE=N] counts one hit for KEY (and for the X-Tether-Query
                             header, if any) at once, then, if this service's
                             --name is SITE, waits N ms before answering
                             {"site", "key", "hits"}: federated-query tests
                             count deliveries and give each site its own delay
  GET  /tally                {"site", "keys": {KEY: hits}, "queries": {ID: hits}}
"""

import argparse
import hashlib
import json
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 64 * 1024
BLOCK = 4096

# One 64 KiB base buffer; pattern() stamps the absolute block number into the
# first 8 bytes of every 4 KiB block, so a reordered, repeated or dropped
# chunk changes the hash even though the filler repeats.
_BASE = bytes(((i * 131) + (i >> 8) * 7 + 0x5A) & 0xFF for i in range(CHUNK))

# The "records" behind /count: patients per site for the demo query.
COUNT_TABLE = {
    "clinic-a": 1287,
    "clinic-b": 342,
    "clinic-c": 77,
    "lab-north": 5120,
    "lab-south": 918,
}


def pattern(offset, length):
    """Bytes [offset, offset+length) of the /bytes stream. offset must be a
    multiple of 64 KiB; length at most 64 KiB."""
    assert offset % CHUNK == 0 and 0 <= length <= CHUNK
    buf = bytearray(_BASE)
    first = offset // BLOCK
    for b in range(CHUNK // BLOCK):
        struct.pack_into(">Q", buf, b * BLOCK, first + b)
    return bytes(buf[:length])


def pattern_chunks(n):
    """Yields the n-byte /bytes stream in 64 KiB pieces."""
    off = 0
    while off < n:
        ln = min(CHUNK, n - off)
        yield pattern(off, ln)
        off += ln


def pattern_sha256(n):
    h = hashlib.sha256()
    for c in pattern_chunks(n):
        h.update(c)
    return h.hexdigest()


def site_count(name):
    if name in COUNT_TABLE:
        return COUNT_TABLE[name]
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 1000


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.requests = 0
        self.by_route = {}

    def enter(self, path):
        route = "/" + path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        with self.lock:
            self.inflight += 1
            self.requests += 1
            self.by_route[route] = self.by_route.get(route, 0) + 1
            self.max_inflight = max(self.max_inflight, self.inflight)

    def leave(self):
        with self.lock:
            self.inflight -= 1

    def snapshot(self, reset=False):
        with self.lock:
            snap = {"inflight": self.inflight, "max_inflight": self.max_inflight,
                    "requests": self.requests, "by_route": dict(self.by_route)}
            if reset:
                self.max_inflight = self.inflight
            return snap


class Tally:
    """Hits per /tally/KEY and per X-Tether-Query id (one per process)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = {}
        self.queries = {}

    def hit(self, key, query_id):
        with self.lock:
            self.keys[key] = self.keys.get(key, 0) + 1
            if query_id:
                self.queries[query_id] = self.queries.get(query_id, 0) + 1
            return self.keys[key]

    def snapshot(self):
        with self.lock:
            return {"keys": dict(self.keys), "queries": dict(self.queries)}


TALLY = Tally()


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tether-sample/1"
    # Head and body are two writes on a kept-alive connection: without
    # TCP_NODELAY the body can wait for the delayed ACK of the head (40 ms).
    disable_nagle_algorithm = True

    def __getattr__(self, name):
        # http.server looks up do_<METHOD>; every method goes to one dispatcher.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    # --- helpers -----------------------------------------------------------

    def _send(self, status, body, ctype="application/json", extra=()):
        if isinstance(body, (dict, list)):
            body = (json.dumps(body, sort_keys=True) + "\n").encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Sample", "yes")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body_chunks(self):
        """Yields the request body, de-chunked if needed; bounded reads."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise BadRequest("bad chunk size line")
                size_txt = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_txt, 16)
                except ValueError:
                    raise BadRequest("bad chunk size")
                if size < 0:
                    raise BadRequest("bad chunk size")
                if size == 0:
                    # Trailers until the empty line.
                    while True:
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            return
                yield from self._read_exactly(size)
                if self.rfile.read(2) not in (b"\r\n",):
                    raise BadRequest("missing CRLF after chunk")
            return
        cl = self.headers.get("Content-Length")
        if cl is None:
            return
        try:
            left = int(cl)
        except ValueError:
            raise BadRequest("bad Content-Length")
        if left < 0:
            raise BadRequest("bad Content-Length")
        yield from self._read_exactly(left)

    def _read_exactly(self, left):
        """Yields the next left bytes of the body in bounded reads."""
        while left > 0:
            data = self.rfile.read(min(CHUNK, left))
            if not data:
                raise BadRequest("body ended early")
            left -= len(data)
            yield data

    def _drain_body(self):
        h = hashlib.sha256()
        n = 0
        for c in self._body_chunks():
            h.update(c)
            n += len(c)
        return n, h.hexdigest()

    # --- routing -----------------------------------------------------------

    def _dispatch(self):
        self.server.stats.enter(self.path)
        try:
            self._route()
        except BadRequest as e:
            self.close_connection = True
            try:
                self._send(400, {"error": "bad_request", "detail": str(e)})
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True
        finally:
            self.server.stats.leave()

    def _route(self):
        u = urllib.parse.urlsplit(self.path)
        path, query = u.path, u.query
        q = urllib.parse.parse_qs(query)
        m = self.command

        if path == "/healthz":
            self._drain_body()
            return self._send(200, "ok\n", "text/plain")
        if path.startswith("/bytes/") and m in ("GET", "HEAD"):
            return self._bytes(path[len("/bytes/"):], q)
        if path == "/sha256" and m in ("POST", "PUT"):
            n, digest = self._drain_body()
            return self._send(200, {"sha256": digest, "bytes": n, "method": m})
        if path == "/echo" or path.startswith("/echo/"):
            n, digest = self._drain_body()
            headers = {}
            for k, v in self.headers.items():
                k = k.lower()
                headers[k] = headers[k] + ", " + v if k in headers else v
            return self._send(200, {
                "method": m, "path": path, "query": query, "headers": headers,
                "raw_headers": [[k, v] for k, v in self.headers.items()],
                "body_length": n, "body_sha256": digest,
            })
        if path == "/slow":
            self._drain_body()
            ms = _int_arg(q, "ms", 1000)
            time.sleep(max(0, min(ms, 600000)) / 1000.0)
            return self._send(200, {"ms": ms, "query": query})
        if path == "/hang":
            self._drain_body()
            return self._hang()
        if path.startswith("/status/"):
            self._drain_body()
            try:
                st = int(path[len("/status/"):])
            except ValueError:
                st = 0
            if not 200 <= st <= 599:
                raise BadRequest("status must be 200..599")
            return self._send(st, {"status": st})
        if path == "/count" and m in ("GET", "POST"):
            self._drain_body()
            site = self.server.site_name or (q.get("site") or [""])[0]
            return self._send(200, {"site": site, "count": site_count(site)})
        if path == "/tally" and m == "GET":
            self._drain_body()
            snap = TALLY.snapshot()
            snap["site"] = self.server.site_name
            return self._send(200, snap)
        if path.startswith("/tally/") and len(path) > len("/tally/"):
            self._drain_body()
            key = path[len("/tally/"):]
            hits = TALLY.hit(key, self.headers.get("X-Tether-Query", ""))
            ms = _int_arg(q, "ms." + self.server.site_name, 0) if self.server.site_name else 0
            if ms > 0:
                time.sleep(min(ms, 600000) / 1000.0)
            return self._send(200, {"site": self.server.site_name, "key": key, "hits": hits})
        if path == "/stats":
            self._drain_body()
            reset = (q.get("reset") or ["0"])[0] == "1"
            return self._send(200, self.server.stats.snapshot(reset))
        self._drain_body()
        return self._send(404, {"error": "not_found", "detail": "no route for %s %s" % (m, path)})

    def _bytes(self, n_txt, q):
        try:
            n = int(n_txt)
        except ValueError:
            raise BadRequest("N must be an integer")
        if n < 0 or n > (1 << 40):
            raise BadRequest("N out of range")
        rate = _int_arg(q, "rate", 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.send_header("X-Sample", "yes")
        self.end_headers()
        if self.command == "HEAD":
            return
        start = time.monotonic()
        sent = 0
        for c in pattern_chunks(n):
            self.wfile.write(c)
            sent += len(c)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)

    def _hang(self):
        # Holds the request open without answering; returns when the client
        # closes (readable with EOF) or after 10 minutes.
        deadline = time.monotonic() + 600
        sock = self.connection
        while time.monotonic() < deadline:
            r, _, _ = select.select([sock], [], [], 1.0)
            if r:
                try:
                    if not sock.recv(4096, socket.MSG_PEEK):
                        break
                except OSError:
                    break
                # Pipelined bytes: keep waiting, this request never answers.
                time.sleep(0.5)
        self.close_connection = True


def _int_arg(q, key, default):
    try:
        return int((q.get(key) or [default])[0])
    except ValueError:
        raise BadRequest("%s must be an integer" % key)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description="tether sample local service")
    ap.add_argument("port", type=int)
    ap.add_argument("--name", default="", help="the site this service belongs to (for /count)")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    a = ap.parse_args(argv)
    srv = Server((a.bind, a.port), Handler)
    srv.site_name = a.name
    srv.quiet = a.quiet
    srv.stats = Stats()
    print("listening %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# Integration: HTTP/1.1 chunked trailers through the hub, both ways, to HTTP/1.1 and HTTP/2 users.
# SPDX-License-Identifier: MIT
"""A raw HTTP/1.1 service behind a site (http://):
  /resp  answers a chunked body whose trailer section holds X-Checksum, plus
         a hop-by-hop Keep-Alive and a Content-Type that may not be a
         trailer;
  /echo  reads a chunked request with its trailer section and answers the
         body and the trailers it got as JSON.
Users: an HTTP/1.1 client on a raw TLS socket (the chunked body it reads
ends in the trailer section) and an HTTP/2 client (python3-h2: a
TrailersReceived event). Request trailers go the other way from both; the
hub passes the user's X-Req-Sum and drops the names it reserves
(x-tether-*, authorization), as it does in headers."""
import json
import os
import socket
import socketserver
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Skip, debian_import, free_port, tls_connect  # noqa: E402

h2 = debian_import("h2", "h2.config", "h2.connection", "h2.events")

SITE = "clinic-a"


def read_chunked(f):
    """(body, [(name, value)...]) of a chunked message read from file f."""
    body = b""
    while True:
        size = int(f.readline().split(b";")[0].strip(), 16)
        if size == 0:
            break
        body += f.read(size)
        f.readline()
    trailers = []
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            return body, trailers
        name, _, value = line.decode().partition(":")
        trailers.append((name.strip().lower(), value.strip()))


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().decode()
        method, path = line.split()[:2]
        headers = {}
        while True:
            h = self.rfile.readline()
            if h in (b"\r\n", b""):
                break
            k, _, v = h.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        if path == "/resp":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n"
                             b"Connection: close\r\n\r\n"
                             b"6\r\nhello \r\n5\r\nworld\r\n0\r\n"
                             b"X-Checksum: abc123\r\nKeep-Alive: timeout=1\r\n"
                             b"Content-Type: text/evil\r\n\r\n")
            return
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, trailers = read_chunked(self.rfile)
        else:
            body = self.rfile.read(int(headers.get("content-length", "0")))
            trailers = []
        out = json.dumps({"body": body.decode(), "trailers": trailers,
                          "te": headers.get("te")}).encode()
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(out), out))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def h1_exchange(hub, req):
    s = tls_connect(hub.port)
    s.sendall(req)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data


def h2_exchange(hub, headers, body=None, trailers=None):
    """One request on a new HTTP/2 connection: (status, headers, body, trailers)."""
    s = tls_connect(hub.port, alpn=("h2",))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding="utf-8"))
    c.initiate_connection()
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, headers, end_stream=body is None)
    if body is not None:
        c.send_data(sid, body, end_stream=trailers is None)
        if trailers is not None:
            c.send_headers(sid, trailers, end_stream=True)
    s.sendall(c.data_to_send())
    status, rh, rb, rt, done = None, {}, b"", None, False
    while not done:
        data = s.recv(65536)
        if not data:
            break
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                rh = dict(ev.headers)
                status = rh.get(":status")
            elif isinstance(ev, h2.events.DataReceived):
                rb += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.TrailersReceived):
                rt = dict(ev.headers)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        s.sendall(c.data_to_send())
    s.close()
    return status, rh, rb, rt


def main(h):
    if h2 is None:
        raise Skip("python3-h2 is not installed")
    port = free_port()
    srv = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        hub, site, _ = h.setup(SITE, services={"web": "http://127.0.0.1:%d" % port})
        base = "/v1/sites/%s/services/web" % SITE
        auth = "Bearer " + hub.token

        # Response trailers to an HTTP/1.1 user: the last chunk carries them.
        raw = h1_exchange(hub, ("GET %s/resp HTTP/1.1\r\nHost: hub\r\nAuthorization: %s\r\n"
                                "Connection: close\r\n\r\n" % (base, auth)).encode())
        head, _, rest = raw.partition(b"\r\n\r\n")
        hl = head.decode().lower()
        h.check(hl.startswith("http/1.1 200") and "transfer-encoding: chunked" in hl,
                "HTTP/1.1 user: chunked 200", head)
        h.check("trailer: x-checksum" in hl, "HTTP/1.1 user: the Trailer header passed", head)
        import io
        body, trl = read_chunked(io.BytesIO(rest))
        h.check(body == b"hello world", "HTTP/1.1 user: the body", body)
        h.check(("x-checksum", "abc123") in trl, "HTTP/1.1 user: the trailer in the last chunk",
                rest[-200:])
        names = [n for n, _ in trl]
        h.check("keep-alive" not in names and "content-type" not in names,
                "HTTP/1.1 user: hop-by-hop and framing trailers dropped", trl)

        # Response trailers to an HTTP/2 user: a trailing HEADERS frame.
        status, rh, rb, rt = h2_exchange(hub, [(":method", "GET"), (":scheme", "https"),
                                               (":authority", "hub"), (":path", base + "/resp"),
                                               ("authorization", auth)])
        h.check(status == "200" and rb == b"hello world", "HTTP/2 user: 200 and the body",
                (status, rb))
        h.check(rt is not None and rt.get("x-checksum") == "abc123",
                "HTTP/2 user: a TrailersReceived event with the trailer", rt)
        h.check(rt is not None and "keep-alive" not in rt and "content-type" not in rt,
                "HTTP/2 user: hop-by-hop and framing trailers dropped", rt)

        # Request trailers from an HTTP/2 user reach the service.
        status, rh, rb, rt = h2_exchange(
            hub, [(":method", "POST"), (":scheme", "https"), (":authority", "hub"),
                  (":path", base + "/echo"), ("authorization", auth), ("te", "trailers")],
            body=b"abc", trailers=[("x-req-sum", "s1"), ("x-tether-user", "evil"),
                                   ("authorization", "Bearer stolen")])
        got = json.loads(rb) if status == "200" else {}
        tr = dict(got.get("trailers", []))
        h.check(got.get("body") == "abc" and tr.get("x-req-sum") == "s1",
                "HTTP/2 user: request trailers reached the service", got)
        h.check("x-tether-user" not in tr and "authorization" not in tr,
                "HTTP/2 user: reserved names dropped from request trailers", got)

        # Request trailers from an HTTP/1.1 user (chunked upload).
        raw = h1_exchange(hub, ("POST %s/echo HTTP/1.1\r\nHost: hub\r\nAuthorization: %s\r\n"
                                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                "4\r\nwxyz\r\n0\r\nX-Req-Sum: s2\r\nX-Forwarded-For: 6.6.6.6\r\n"
                                "\r\n" % (base, auth)).encode())
        head, _, rest = raw.partition(b"\r\n\r\n")
        got = json.loads(rest) if head.startswith(b"HTTP/1.1 200") else {}
        tr = dict(got.get("trailers", []))
        h.check(got.get("body") == "wxyz" and tr.get("x-req-sum") == "s2",
                "HTTP/1.1 user: chunked request trailers reached the service", raw[-300:])
        h.check("x-forwarded-for" not in tr, "HTTP/1.1 user: reserved trailer dropped", got)
    finally:
        srv.shutdown()


if __name__ == "__main__":
    Harness.main("trailers", main, tools=())

#!/usr/bin/env python3
# A slow-streaming HTTP/1.1 service for the streaming tests: SSE events and chunks spaced in time.
# SPDX-License-Identifier: MIT
"""Usage: stream_service.py PORT   (prints "listening PORT" once it accepts)

Routes (query: n = how many, gap = ms between two writes, default 20 and 200):
  GET|POST /sse     text/event-stream, chunked; event i is
                    "id: i\\ndata: T\\n\\n" with T = time.monotonic() when it
                    was written (CLOCK_MONOTONIC, shared by every process on
                    the machine), written with one send
  GET|POST /chunks  application/octet-stream, chunked; chunk i is one line
                    "i T xxxx...\\n" of about 1 KiB, T as above
A POST body is read (Content-Length) before the answer starts.

Each event or chunk is sent the moment it is made (wbufsize 0, one send
call, TCP_NODELAY), so any delay a reader sees is the path's, not ours.
"""

import socket
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        while n > 0:
            d = self.rfile.read(min(n, 65536))
            if not d:
                return
            n -= len(d)
        self.do_GET()

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        n = int(q.get("n", ["20"])[0])
        gap = int(q.get("gap", ["200"])[0]) / 1000.0
        if u.path == "/sse":
            ctype = "text/event-stream"
        elif u.path == "/chunks":
            ctype = "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i in range(n):
                time.sleep(gap)
                t = time.monotonic()
                if ctype == "text/event-stream":
                    body = b"id: %d\ndata: %.6f\n\n" % (i, t)
                else:
                    head = b"%d %.6f " % (i, t)
                    body = head + b"x" * (1023 - len(head)) + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the reader went away


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    srv.daemon_threads = True
    print("listening %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()

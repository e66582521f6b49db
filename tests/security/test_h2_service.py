#!/usr/bin/env python3
# Attack suite: a hostile HTTP/2 service (h2c://) behind a real site, against the site's HTTP/2 client.
# SPDX-License-Identifier: MIT
"""The service is python3-h2 on a raw socket, misbehaving on purpose; the
site (tether-site, h2c://) must hold: every fault stays on its stream or its
service connection, the user gets a clean error (502 with a reason) or a
broken transfer, never a complete-looking wrong answer, and the next
request works.

  /status099   :status 099 (outside 100-599)
  /bigtrailer  a good head and body, then 150 trailer fields
  /splittrl    a trailer value with CR LF (never reaches the user)
  /rst         RST_STREAM(INTERNAL_ERROR) after the head
  /goaway      GOAWAY after an answer: the next request opens a new connection
  /push        a PUSH_PROMISE (push is off: the connection is cut)
  /ok          a plain answer with a trailer, after each fault
  /echotrl     answers the request trailers it got (they reach an HTTP/2
               service filtered as headers are)
"""
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Harness, Skip, debian_import  # noqa: E402

h2 = debian_import("h2", "h2.config", "h2.connection", "h2.events")
from test_trailers import h2_exchange  # noqa: E402 (an HTTP/2 user on a raw TLS socket)

SITE = "clinic-a"


class EvilService:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False)
        c = h2.connection.H2Connection(cfg)
        c.initiate_connection()
        s.sendall(c.data_to_send())
        paths = {}
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        path = dict(ev.headers)[":path"]
                        if path == "/echotrl":
                            paths[ev.stream_id] = dict(ev.headers)
                        else:
                            self.answer(c, ev.stream_id, path)
                    elif isinstance(ev, h2.events.DataReceived):
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        trl = ";".join("%s=%s" % kv for kv in ev.headers)
                        te = paths.pop(ev.stream_id, {}).get("te", "")
                        c.send_headers(ev.stream_id, [(":status", "200"), ("x-got", trl),
                                                      ("x-te", te)], end_stream=True)
                s.sendall(c.data_to_send())
        except Exception:
            pass
        finally:
            s.close()

    def answer(self, c, sid, path):
        ok = [(":status", "200"), ("content-type", "text/plain")]
        if path == "/status099":
            c.send_headers(sid, [(":status", "099")], end_stream=True)
        elif path == "/bigtrailer":
            c.send_headers(sid, ok)
            c.send_data(sid, b"body")
            c.send_headers(sid, [("x-t%d" % i, "v") for i in range(150)], end_stream=True)
        elif path == "/splittrl":
            c.send_headers(sid, ok)
            c.send_data(sid, b"body")
            c.send_headers(sid, [("x-evil", "a\r\nx-injected: 1")], end_stream=True)
        elif path == "/rst":
            c.send_headers(sid, ok)
            c.send_data(sid, b"partial")
            c.reset_stream(sid, 2)
        elif path == "/goaway":
            c.send_headers(sid, ok)
            c.send_data(sid, b"bye", end_stream=True)
            c.close_connection()
        elif path == "/push":
            c.send_headers(sid, ok)
            # push is disabled by the site's SETTINGS: h2 refuses to build
            # the frame, so write it raw (type 5, END_HEADERS, promised 2).
            c._data_to_send += bytes([0, 0, 5, 5, 4]) + sid.to_bytes(4, "big") + \
                (2).to_bytes(4, "big") + b"\x82"
        else:
            c.send_headers(sid, ok)
            c.send_data(sid, b"fine")
            c.send_headers(sid, [("x-check", "ok")], end_stream=True)


def main(h):
    if h2 is None:
        raise Skip("python3-h2 is not installed")
    evil = EvilService()
    hub, site, _ = h.setup(SITE, extra_services={"evil": "h2c://127.0.0.1:%d" % evil.port})

    def get(path):
        return hub.proxy(SITE, "evil", path, http="2", timeout=20)

    def ok_after(what):
        r = get("/ok")
        h.check(r.status == 200 and r.body == b"fine", "after %s: the next request works" % what,
                r)

    # Request trailers from an HTTP/2 user reach an HTTP/2 service, filtered;
    # TE: trailers goes with them.
    status, rh, _, _ = h2_exchange(
        hub, [(":method", "POST"), (":scheme", "https"), (":authority", "hub"),
              (":path", "/v1/sites/%s/services/evil/echotrl" % SITE),
              ("authorization", "Bearer " + hub.token), ("te", "trailers")],
        body=b"abc", trailers=[("x-sum", "7"), ("x-tether-user", "evil"), ("cookie", "s=1")])
    h.check(status == "200" and rh.get("x-got") == "x-sum=7",
            "request trailers reach an HTTP/2 service, reserved ones dropped", rh)
    h.check(rh.get("x-te") == "trailers", "TE: trailers reaches an HTTP/2 service", rh)

    r = get("/status099")
    h.check(r.status == 502, ":status 099 from the service: 502", r)
    ok_after(":status 099")

    r = get("/bigtrailer")
    h.check(r.status != 200 or r.rc != 0,
            "150 trailer fields: never a complete-looking answer", r)
    ok_after("150 trailers")

    r = get("/splittrl")
    h.check(b"x-injected" not in (r.body or b"") and "x-injected" not in str(r.headers).lower(),
            "a trailer with CR LF injects nothing", r)
    h.check(r.status != 200 or r.rc != 0, "a trailer with CR LF breaks the answer", r)
    ok_after("a CR LF trailer")

    r = get("/rst")
    h.check(r.rc != 0 or r.status >= 500, "RST_STREAM after the head: a broken transfer", r)
    ok_after("RST_STREAM")

    before = evil.conns
    r = get("/goaway")
    h.check(r.status == 200 and r.body == b"bye", "the answer before GOAWAY arrives whole", r)
    ok_after("GOAWAY")
    h.check(evil.conns > before, "after GOAWAY the site opened a new connection",
            (before, evil.conns))

    r = get("/push")
    h.check(r.rc != 0 or r.status >= 500, "PUSH_PROMISE cuts the service connection", r)
    ok_after("PUSH_PROMISE")
    h.check(site.proc.alive() and hub.proc.alive(), "site and hub still running")


if __name__ == "__main__":
    Harness.main("h2_service", main)

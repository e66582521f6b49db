#!/usr/bin/env python3
# Attack: a site (its own key, a hand-made HTTP/2 server) answers the hub's hello with terminal escape sequences and bad service names.
# SPDX-License-Identifier: MIT
"""What "held" means: the hub's log never holds a control byte, DEL or a byte
>= 0x80 from a hello (it shows them as \\xNN); a hello whose agent_version is
not printable ASCII, or whose services are not names tether accepts
([a-z0-9][a-z0-9-]{0,62}, at most 64), is refused with one site_hello_refused
line and the tunnel is closed; the site is not offered with those services.
A well-formed hello from the same hand-made site is accepted (so the refusals
are about the content). Meanwhile another site serves its users normally."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from h2raw import PREFACE, frame, take_frame  # noqa: E402
from harness import Harness, Fatal, tls_connect  # noqa: E402

DATA, HEADERS, SETTINGS, GOAWAY = 0, 1, 4, 7
END_STREAM, END_HEADERS, ACK = 1, 4, 1
ESC = "\x1b[2J\x1b[31mowned\x1b]0;title\x07\r\x7f\u009b1m"


class FakeSite:
    """A TLS 1.3 connection with the site's key, ALPN tether/1, speaking just
    enough HTTP/2 (as the server) to answer the hub's hello."""

    def __init__(self, h, hub, site_dir):
        self.sock = tls_connect(hub.port, alpn=("tether/1",),
                                cert=os.path.join(site_dir, "site.crt"),
                                key=os.path.join(site_dir, "site.key"))
        self.sock.settimeout(10)
        self.buf = b""

    def _read_frame(self):
        while True:
            f, self.buf = take_frame(self.buf)
            if f is not None:
                return f
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d

    def answer_hello(self, body):
        """Waits for the hub's preface and hello request; answers 200 with body."""
        self.sock.sendall(frame(SETTINGS, 0, 0))
        while len(self.buf) < len(PREFACE):
            d = self.sock.recv(65536)
            if not d:
                raise Fatal("hub closed before its preface")
            self.buf += d
        if not self.buf.startswith(PREFACE):
            raise Fatal("no HTTP/2 preface from the hub: %r" % self.buf[:30])
        self.buf = self.buf[len(PREFACE):]
        while True:
            f = self._read_frame()
            if f is None:
                raise Fatal("hub closed before sending its hello")
            ftype, flags, sid, _ = f
            if ftype == SETTINGS and not flags & ACK:
                self.sock.sendall(frame(SETTINGS, ACK, 0))
            if ftype == HEADERS:
                break
        # :status 200 is entry 8 of the HPACK static table.
        self.sock.sendall(frame(HEADERS, END_HEADERS, sid, b"\x88") +
                          frame(DATA, END_STREAM, sid, body))

    def closed_by_hub(self, timeout=5):
        """True when the hub closes the connection (GOAWAY then EOF)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._read_frame() is None:
                    return True
        except (OSError, socket.timeout):
            return False
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def main(h):
    hub, good_site, svc = h.setup("good")
    tok = hub.site_add("evil")
    evil = h.site("evil", hub)
    evil.enroll(tok)
    log_path = hub.proc.log_path

    def hello(version, services):
        import json
        return json.dumps({"site": "evil", "agent_version": version, "services": services},
                          ensure_ascii=False).encode()

    cases = [
        ("escape sequences in agent_version", hello(ESC, ["web"]),
         "agent_version is not 1-63 printable ASCII characters", "\\x1b[2J"),
        ("escape sequences in a service name", hello("0.1.0", ["web", "x" + ESC]),
         "a service name is not [a-z0-9][a-z0-9-]{0,62}", "\\x1b]0;title\\x07\\r\\x7f\\xc2\\x9b"),
        ("an upper-case service name", hello("0.1.0", ["Web"]),
         "a service name is not [a-z0-9][a-z0-9-]{0,62}", "Web"),
        ("a 64-character service name", hello("0.1.0", ["a" * 64]),
         "a service name is not [a-z0-9][a-z0-9-]{0,62}", "a" * 64),
        ("65 services", hello("0.1.0", ["s%d" % i for i in range(65)]),
         "services is not a list of at most 64 names", None),
        ("a service that is not a string", hello("0.1.0", [7]),
         "a service name is not [a-z0-9][a-z0-9-]{0,62}", None),
    ]
    for what, body, reason, shown in cases:
        mark = hub.proc.mark()
        fake = FakeSite(h, hub, evil.dir)
        try:
            fake.answer_hello(body)
            line = hub.proc.wait_log(r"site_hello_refused site=evil\b.*", 5, since=mark,
                                     fatal=False)
            h.check(line is not None, "%s: hello refused with a site_hello_refused line" % what)
            text = hub.proc.text(since=mark)
            h.check('reason="%s"' % reason in text, "%s: the line says why" % what,
                    text[-600:])
            if shown:
                h.check(shown in text, "%s: the value is shown escaped (%s)" % (what, shown))
            h.check(fake.closed_by_hub(), "%s: the hub closed the tunnel" % what)
        finally:
            fake.close()
        hub.wait_online("evil", online=False, timeout=5)
        s = hub.sites().get("evil") or {}
        h.check(not s.get("online") and not s.get("services"),
                "%s: the site is neither online nor offering services" % what, s)
        r = hub.proxy("good", "web", "/healthz")
        h.check(r.status == 200, "%s: the other site still serves its users" % what, r)

    with open(log_path, "rb") as f:
        raw = f.read()
    bad = sorted({b for b in raw if (b < 0x20 and b != 0x0a) or b >= 0x7f})
    h.check(not bad, "hub log holds no control byte, DEL or byte >= 0x80",
            "bytes %r" % bad)

    # The same hand-made site with a well-formed hello is accepted: the
    # refusals above were about the content.
    fake = FakeSite(h, hub, evil.dir)
    try:
        fake.answer_hello(hello("0.1.0-fake", ["web", "db-2"]))
        ok = hub.wait_ready("evil", 10)
        h.check(ok is not None and ok.get("services") == ["web", "db-2"]
                and ok.get("agent_version") == "0.1.0-fake",
                "a well-formed hello from the hand-made site is accepted", ok)
    finally:
        fake.close()
    h.check(hub.proc.alive(), "hub still running")


Harness.main("hello_escape", main)

# Attack-suite helpers: idle and slow user connections to the hub (no token), watched until the hub closes them.
# SPDX-License-Identifier: MIT
"""Used by test_idle_conns.py and test_slowloris.py. Stdlib only.

An attacker connection is a TLS connection (or, for the pre-TLS kinds, a
plain TCP one) from a chosen loopback source address, that sends one of:

  nothing   TLS handshake, then not a byte
  half      TLS, then half an HTTP/1.1 head ("GET / HTTP/1.1\\r\\nHost: x\\r\\n")
  preface   TLS with ALPN h2, then only the HTTP/2 preface and SETTINGS
  trickle   TLS, then an HTTP/1.1 head one byte at a time, never finished
  h2trickle TLS with ALPN h2, preface, then a HEADERS frame one byte at a time
  raw       TCP only: not even a ClientHello
  rawtrickle TCP only: a ClientHello one byte at a time

Watcher.poll() reads whatever the hub sends, and records when each
connection was closed by the hub (EOF, reset, or TLS close_notify)."""

import os
import resource
import selectors
import socket
import ssl
import time

from h2raw import PREFACE, frame, hpack_indexed, hpack_new
from harness import Proc

KINDS = ("nothing", "half", "preface", "trickle", "h2trickle")
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
HALF_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n"
TRICKLE_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 4000


def raise_nofile():
    """Client side: as many descriptors as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def h2_get(path, sid=1, authority="127.0.0.1", extra=b""):
    """A HEADERS frame (END_STREAM|END_HEADERS) for GET https://authority/path."""
    block = b"\x82\x87" + hpack_indexed(4, path) + hpack_indexed(1, authority) + extra
    return frame(1, 0x05, sid, block)


def client_hello(alpn=("http/1.1",)):
    """The bytes of a real ClientHello (made by Python's TLS over a socket
    pair), to trickle before any handshake."""
    a, b = socket.socketpair()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    s = ctx.wrap_socket(a, server_hostname="127.0.0.1", do_handshake_on_connect=False)
    s.setblocking(False)
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    b.settimeout(2)
    data = b.recv(65536)
    s.close()
    b.close()
    return data


def _ctx(alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


CTX_H1 = _ctx(("http/1.1",))
CTX_H2 = _ctx(("h2",))


class Conn:
    def __init__(self, kind, sock, src, opened):
        self.kind = kind
        self.sock = sock
        self.src = src
        self.opened = opened  # monotonic time the connection was set up
        self.closed = None  # monotonic time the hub closed it
        self.got = b""  # plaintext the hub sent (first 4 KiB)
        self.pos = 0  # trickle position
        self.payload = b""
        self.start_at = 0.0  # monotonic time the trickle may start


def open_conn(port, kind, src="127.0.0.1", timeout=10.0, hello=None):
    """Opens one attacker connection; returns a Conn, or None when the hub
    refused it (closed before or during the TLS handshake)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        raw.bind((src, 0))
        raw.connect(("127.0.0.1", port))
    except OSError:
        raw.close()
        return None
    if kind in ("raw", "rawtrickle"):
        c = Conn(kind, raw, src, time.monotonic())
        c.payload = (hello or b"") if kind == "rawtrickle" else b""
        raw.setblocking(False)
        return c
    ctx = CTX_H2 if kind in ("preface", "h2trickle") else CTX_H1
    try:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except (OSError, ssl.SSLError):
        raw.close()
        return None
    c = Conn(kind, s, src, time.monotonic())
    try:
        if kind == "half":
            s.sendall(HALF_HEAD)
        elif kind == "preface":
            s.sendall(PREFACE + H2_SETTINGS)
        elif kind == "trickle":
            c.payload = TRICKLE_HEAD
        elif kind == "h2trickle":
            s.sendall(PREFACE + H2_SETTINGS)
            c.payload = h2_get("/healthz", extra=hpack_new("x-padding", "x" * 100) * 30)[:-1]
    except OSError:
        s.close()
        return None
    s.setblocking(False)
    return c


class Watcher:
    """Watches many connections for the hub closing them."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.open = set()
        self.done = []

    def add(self, c):
        self.sel.register(c.sock, selectors.EVENT_READ, c)
        self.open.add(c)

    def _closed(self, c, now):
        c.closed = now
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        self.open.discard(c)
        self.done.append(c)
        try:
            c.sock.close()
        except OSError:
            pass

    def poll(self, timeout=0.05):
        for key, _ in self.sel.select(timeout):
            c = key.data
            now = time.monotonic()
            try:
                while True:
                    data = c.sock.recv(65536)
                    if not data:
                        self._closed(c, now)
                        break
                    if len(c.got) < 4096:
                        c.got += data[:4096 - len(c.got)]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError):
                self._closed(c, now)

    def trickle(self):
        """One more byte on every trickling connection still open."""
        now = time.monotonic()
        for c in list(self.open):
            if c.pos >= len(c.payload) or now < c.start_at:
                continue
            try:
                c.sock.send(c.payload[c.pos:c.pos + 1])
                c.pos += 1
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError):
                self._closed(c, time.monotonic())

    def run(self, seconds, trickle_every=None):
        """Polls for `seconds`, trickling a byte every trickle_every s."""
        end = time.monotonic() + seconds
        next_t = time.monotonic()
        while time.monotonic() < end and self.open:
            if trickle_every and time.monotonic() >= next_t:
                self.trickle()
                next_t += trickle_every
            self.poll(0.05)

    def close_all(self):
        for c in list(self.open):
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            try:
                c.sock.close()
            except OSError:
                pass
        self.open.clear()


def https_get(port, path, token=None, src="127.0.0.1", timeout=10.0, alpn=("http/1.1",)):
    """One HTTP/1.1 GET over a new TLS connection from src; returns
    (status, body) or (0, error text)."""
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.bind((src, 0))
        raw.connect(("127.0.0.1", port))
        s = CTX_H1.wrap_socket(raw, server_hostname="127.0.0.1")
    except (OSError, ssl.SSLError) as e:
        return 0, str(e)
    try:
        return KeepAlive(s).get(path, token)
    finally:
        s.close()


class KeepAlive:
    """An HTTP/1.1 keep-alive connection made before an attack."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    @classmethod
    def open(cls, port, src="127.0.0.1", timeout=10.0):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.bind((src, 0))
        raw.connect(("127.0.0.1", port))
        return cls(CTX_H1.wrap_socket(raw, server_hostname="127.0.0.1"))

    def get(self, path, token=None):
        head = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path
        if token:
            head += "Authorization: Bearer %s\r\n" % token
        try:
            self.sock.sendall((head + "\r\n").encode())
            while b"\r\n\r\n" not in self.buf:
                d = self.sock.recv(65536)
                if not d:
                    return 0, "closed"
                self.buf += d
            h, _, rest = self.buf.partition(b"\r\n\r\n")
            lines = h.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            n = 0
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    n = int(v)
            while len(rest) < n:
                d = self.sock.recv(65536)
                if not d:
                    return 0, "closed mid-body"
                rest += d
            self.buf = rest[n:]
            return status, rest[:n]
        except (OSError, ssl.SSLError, ValueError, IndexError) as e:
            return 0, str(e)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def hub_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def has_asan(pid):
    """True when the process runs with AddressSanitizer (its allocator keeps
    freed memory in quarantine: RSS says nothing about the hub's heap)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def start_hub(h, conf, nofile):
    hub = h.hub()
    hub.init()
    hub.set_conf(**conf)
    argv = [h.bin("tether-hub"), "run", "--state", hub.dir, "--listen", hub.addr]
    if nofile:
        argv = ["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--"] + argv
    hub.proc = Proc(h, hub.name, argv, daemon=True)
    hub.proc.wait_log(r"\bhub_started\b", 15)
    return hub

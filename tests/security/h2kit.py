# Attack-suite helpers: raw HTTP/2 frames over TLS, the bystanders who must stay served, RSS.
# SPDX-License-Identifier: MIT
"""Shared by tests/security/test_*.py.

Frames are built by hand (struct) so that a test can send what no correct
library would: a HEADERS without END_HEADERS, a DATA frame beyond the window,
a PUSH_PROMISE the peer disabled. Header blocks are encoded with python3-hpack;
received frames are parsed with python3-hyperframe (Debian packages, installed
by deploy/setup.sh). Without them the test is skipped (exit 77).
"""

import os
import select
import ssl
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Fatal, Harness, Skip, tls_connect  # noqa: E402,F401
from h2raw import PREFACE, frame  # noqa: E402,F401 (tests use them as k.frame, k.PREFACE)

try:
    import hpack  # noqa: F401
    import hyperframe.frame  # noqa: F401
except ImportError:
    # A python3 outside Debian's (pyenv) does not see Debian's packages;
    # they are pure python, so its dist-packages serve as well.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import hpack  # noqa: F401
        import hyperframe.frame  # noqa: F401
    except ImportError:
        hpack = None

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 7, 8, 11

SETTINGS_MAX_CONCURRENT_STREAMS = 3
SETTINGS_INITIAL_WINDOW_SIZE = 4


def need_libs():
    if hpack is None:
        raise Skip("python3-hpack / python3-hyperframe not installed (deploy/setup.sh)")


def settings(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def rst(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def goaway(last, code=NO_ERROR, text=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + text)


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


class FrameConn:
    """One HTTP/2 connection over a TLS socket, both roles. A reader thread
    (start_reader) records every frame; a test that plays a peer who never
    reads simply does not start it."""

    SEND_STALL_S = 30.0  # a send that makes no progress this long counts as closed

    def __init__(self, sock):
        # OpenSSL forbids using one SSL object from two threads at once, and
        # a reader thread and a writer share each connection here: the socket
        # is non-blocking and every SSL call holds iolock, waits are select()s
        # outside it.
        sock.settimeout(0.0)
        self.sock = sock
        self.iolock = threading.Lock()
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.frames = []  # (type, flags, sid, payload bytes) in arrival order
        self.closed_at = None  # monotonic time the peer closed (EOF / reset)
        self.goaway = None  # (last_stream_id, error_code, text)
        self.counts = {}
        self.keep = True  # keep payloads (off for floods)
        self._rbuf = b""
        self.reader = None
        self.close_how = None  # "eof" or the exception that ended reading
        self.send_error = None  # the exception that ended sending

    # --- sending ---
    def _send_all(self, data):
        view = memoryview(data)
        last = time.monotonic()
        while view:
            with self.iolock:
                try:
                    n = self.sock.send(view)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    n = 0
            if n:
                view = view[n:]
                last = time.monotonic()
            elif time.monotonic() - last > self.SEND_STALL_S:
                raise TimeoutError("peer took nothing for %.0f s" % self.SEND_STALL_S)
            else:
                select.select([], [self.sock], [], 0.05)

    def send(self, *chunks):
        """Sends bytes; returns False once the peer has closed (the write
        failed) or took nothing for SEND_STALL_S, True otherwise."""
        try:
            self._send_all(b"".join(chunks))
            return True
        except (OSError, ValueError, ssl.SSLError) as e:
            self.send_error = type(e).__name__
            with self.lock:
                if self.closed_at is None:
                    self.closed_at = time.monotonic()
                self.cond.notify_all()
            return False

    def block(self, headers):
        return self.enc.encode(headers, huffman=False)  # pure-python huffman is slow

    def headers(self, sid, hdrs, end_stream=True, end_headers=True):
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, sid, self.block(hdrs))

    # --- receiving ---
    def _recv(self):
        while True:
            with self.iolock:
                try:
                    return self.sock.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    pass
            select.select([self.sock], [], [], 0.05)

    def _read_exact(self, n):
        while len(self._rbuf) < n:
            d = self._recv()
            if not d:
                raise EOFError
            self._rbuf += d
        out, self._rbuf = self._rbuf[:n], self._rbuf[n:]
        return out

    def read_frame(self):
        hd = self._read_exact(9)
        length = int.from_bytes(hd[:3], "big")
        ftype, flags = hd[3], hd[4]
        sid = int.from_bytes(hd[5:9], "big") & 0x7fffffff
        payload = self._read_exact(length)
        return ftype, flags, sid, payload

    def _record(self, f):
        ftype, flags, sid, payload = f
        with self.lock:
            self.counts[ftype] = self.counts.get(ftype, 0) + 1
            if ftype == GOAWAY and len(payload) >= 8 and self.goaway is None:
                last, code = struct.unpack(">II", payload[:8])
                self.goaway = (last & 0x7fffffff, code, payload[8:200])
            if self.keep or ftype not in (DATA, PING, SETTINGS):
                self.frames.append(f)
            self.cond.notify_all()

    def _reader(self):
        try:
            while True:
                self._record(self.read_frame())
        except EOFError:
            self.close_how = "eof"
        except (OSError, ssl.SSLError, ValueError) as e:
            self.close_how = type(e).__name__
        with self.lock:
            if self.closed_at is None:
                self.closed_at = time.monotonic()
            self.cond.notify_all()

    def start_reader(self):
        self.reader = threading.Thread(target=self._reader, daemon=True)
        self.reader.start()

    def wait_for(self, pred, timeout):
        """Waits until pred(self) (called under the lock) is true; returns
        its last value."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                v = pred(self)
                left = deadline - time.monotonic()
                if v or left <= 0:
                    return v
                self.cond.wait(min(left, 0.2))

    def wait_closed(self, timeout):
        """True when the peer sent GOAWAY or closed the socket in time."""
        return bool(self.wait_for(lambda c: c.goaway is not None or c.closed_at is not None,
                                  timeout))

    def find(self, ftype, sid=None):
        with self.lock:
            return [f for f in self.frames if f[0] == ftype and (sid is None or f[2] == sid)]

    def decode(self, payload, flags):
        """Header block of a HEADERS payload (padding and priority removed)."""
        p = payload
        pad = 0
        if flags & PADDED:
            pad, p = p[0], p[1:]
        if flags & PRIO:
            p = p[5:]
        if pad:
            p = p[:-pad]
        return [(k.decode() if isinstance(k, bytes) else k,
                 v.decode() if isinstance(v, bytes) else v) for k, v in self.dec.decode(p)]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def user_h2(port, timeout=10.0):
    """A user's HTTP/2 connection to the hub (TLS, ALPN h2), preface and
    empty SETTINGS sent, the hub's SETTINGS acknowledged by the reader."""
    s = tls_connect(port, alpn=("h2",), timeout=timeout)
    if s.selected_alpn_protocol() != "h2":
        s.close()
        raise Fatal("hub did not select ALPN h2 (got %r)" % s.selected_alpn_protocol())
    c = FrameConn(s)
    c.send(PREFACE, settings(), settings(ack=True))
    return c


def request_headers(hub, path, token, method="GET"):
    return [(":method", method), (":scheme", "https"), (":authority", hub.addr),
            (":path", path), ("authorization", "Bearer " + token)]


# ---------------------------------------------------------------------------
# bystanders

class Bystanders:
    """Another user (own token, own connections) fetching from every given
    site. baseline() times them with no attack; check() during an attack
    asserts each is served in full, within max(10 x baseline, baseline + 5 s)
    (a loose bound: the machine is shared and noisy)."""

    SIZE = 256 * 1024

    def __init__(self, h, hub, token, sites):
        self.h, self.hub, self.token, self.sites = h, hub, token, sites
        self.base = {}

    def _fetch(self, site, http):
        r = self.hub.proxy(site, "web", "/bytes/%d" % self.SIZE, token=self.token, http=http,
                           timeout=30)
        ok = r.status == 200 and r.size == self.SIZE
        return ok, r.elapsed, r

    def baseline(self):
        for site in self.sites:
            for http in ("2", "1.1"):
                times = []
                for _ in range(3):
                    ok, t, r = self._fetch(site, http)
                    if not ok:
                        raise Fatal("bystander baseline to %s over HTTP/%s failed: %r" % (
                            site, http, r))
                    times.append(t)
                self.base[(site, http)] = sorted(times)[1]
        self.h.info("bystander baseline: %s" % ", ".join(
            "%s/h%s %.3fs" % (k[0], k[1], v) for k, v in sorted(self.base.items())))

    def check(self, what):
        for site in self.sites:
            for http in ("2", "1.1"):
                ok, t, r = self._fetch(site, http)
                base = self.base[(site, http)]
                limit = max(10 * base, base + 5.0)
                self.h.check(ok and t <= limit,
                             "%s: another user is served by site %s over HTTP/%s "
                             "(%.3fs, baseline %.3fs)" % (what, site, http, t, base),
                             repr(r) if not ok else "took %.3fs > %.3fs" % (t, limit))


class RssWatch(threading.Thread):
    """Samples a process's RSS every 50 ms while it runs."""

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc = proc
        self.peak = 0
        self.ev = threading.Event()

    def run(self):
        while not self.ev.is_set():
            v = self.proc.rss_kib()
            if v is not None and v > self.peak:
                self.peak = v
            self.ev.wait(0.05)

    def stop(self):
        self.ev.set()
        self.join(2)
        v = self.proc.rss_kib()
        if v is not None and v > self.peak:
            self.peak = v
        return self.peak


def quiet_asan_quarantine(h):
    """Under ASan, freed memory waits in a 256 MB quarantine and would be
    measured as RSS; a small quarantine keeps use-after-free detection."""
    cur = h.env.get("ASAN_OPTIONS", "")
    if "quarantine_size_mb" not in cur:
        h.env["ASAN_OPTIONS"] = (cur + ":" if cur else "") + "quarantine_size_mb=4"


def make_token(hub, name, *args):
    return hub.token_create(name, *args)

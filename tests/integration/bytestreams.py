# Test helpers for byte streams through the hub: an HTTP/2 CONNECT client (python3-h2) and TCP services.
# SPDX-License-Identifier: MIT
"""Shared by tests that carry raw TCP (and later WebSocket) through the hub.

Client: one TLS + HTTP/2 connection to the hub (python3-h2, Debian's), on
which each CONNECT is one stream. Single-threaded: pump() moves bytes both
ways under HTTP/2 flow control until a condition holds. Received bytes are
credited at once (the test is a fast reader) and kept, or only hashed and
counted when a stream is opened with keep=False.

Services: small threaded TCP servers on loopback (echo; read-to-EOF-then-
answer; banner-then-half-close)."""

import hashlib
import os
import select
import socket
import ssl
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Fatal, Skip, debian_import, tls_connect  # noqa: E402

if debian_import("h2.config", "h2.connection", "h2.events", "h2.settings"):
    import h2.config  # noqa: F401
    import h2.connection
    import h2.events
    import h2.settings
else:
    h2 = None


def has_asan(pid):
    """True when the process runs with AddressSanitizer (tests scale sizes
    down: it is several times slower)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def need_h2():
    if h2 is None:
        raise Skip("python3-h2 not installed (deploy/setup.sh)")


class Stream:
    def __init__(self, sid, keep=True):
        self.sid = sid
        self.keep = keep
        self.status = None
        self.headers = {}
        self.data = bytearray()
        self.hash = hashlib.sha256()
        self.received = 0
        self.ended = False  # END_STREAM from the hub
        self.reset = None  # RST_STREAM error code
        self.out = bytearray()
        self.out_end = False
        self.end_sent = False

    def send(self, data, end=False):
        self.out += data
        self.out_end = self.out_end or end

    @property
    def done(self):
        return self.ended or self.reset is not None


class Client:
    """One HTTP/2 connection to the hub as a user with token."""

    def __init__(self, port, token, site="clinic-a", alpn="h2", cert=None, key=None):
        """alpn, cert, key: another ALPN with a client certificate (a peer
        hub's link, tether-peer/1)."""
        need_h2()
        self.token = token
        self.site = site
        self.sock = tls_connect(port, alpn=(alpn,), cert=cert, key=key)
        if self.sock.selected_alpn_protocol() != alpn:
            raise Fatal("hub did not select %s" % alpn)
        self.sock.setblocking(False)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=False,
                                        validate_inbound_headers=False)
        self.c = h2.connection.H2Connection(config=cfg)
        self.c.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        self.c.initiate_connection()
        self.c.increment_flow_control_window(32 << 20)
        self.streams = {}
        self.wbuf = bytearray()
        self.closed = False
        self.enable_connect = None  # the hub's SETTINGS_ENABLE_CONNECT_PROTOCOL
        self.credit = True  # False: a reader that never opens its windows again

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def open(self, service, classic=False, keep=True, extra=(), protocol="connect-tcp", path=""):
        """A CONNECT stream: extended (:protocol, :path .../services/SERVICE
        + path) or classic (:authority SITE.SERVICE:443)."""
        sid = self.c.get_next_available_stream_id()
        if classic:
            hdrs = [(":method", "CONNECT"), (":authority", "%s.%s:443" % (self.site, service))]
        else:
            hdrs = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "https"),
                    (":authority", "hub"),
                    (":path", "/v1/sites/%s/services/%s%s" % (self.site, service, path))]
        hdrs.append(("authorization", "Bearer " + self.token))
        hdrs += list(extra)
        self.c.send_headers(sid, hdrs)
        st = Stream(sid, keep)
        self.streams[sid] = st
        return st

    def request(self, method, path, extra=()):
        """A request without a body on path, with the token."""
        sid = self.c.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", "hub"),
                (":path", path), ("authorization", "Bearer " + self.token)] + list(extra)
        self.c.send_headers(sid, hdrs, end_stream=True)
        st = Stream(sid)
        self.streams[sid] = st
        return st

    # --- moving bytes ---

    def _feed_out(self):
        for st in self.streams.values():
            if st.done and st.reset is not None:
                continue
            while st.out and not st.end_sent:
                try:
                    win = self.c.local_flow_control_window(st.sid)
                except Exception:
                    break
                n = min(len(st.out), win, self.c.max_outbound_frame_size)
                if n <= 0:
                    break
                self.c.send_data(st.sid, bytes(st.out[:n]))
                del st.out[:n]
            if st.out_end and not st.out and not st.end_sent:
                self.c.end_stream(st.sid)
                st.end_sent = True
        self.wbuf += self.c.data_to_send()

    def _event(self, ev):
        E = h2.events
        if isinstance(ev, E.ResponseReceived):
            st = self.streams.get(ev.stream_id)
            if st:
                st.headers = dict(ev.headers)
                st.status = int(st.headers.get(":status", "0"))
        elif isinstance(ev, E.DataReceived):
            st = self.streams.get(ev.stream_id)
            if ev.flow_controlled_length and self.credit:
                self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if st:
                st.received += len(ev.data)
                if st.keep:
                    st.data += ev.data
                else:
                    st.hash.update(ev.data)
        elif isinstance(ev, E.StreamEnded):
            st = self.streams.get(ev.stream_id)
            if st:
                st.ended = True
        elif isinstance(ev, E.StreamReset):
            st = self.streams.get(ev.stream_id)
            if st:
                st.reset = ev.error_code
        elif isinstance(ev, E.RemoteSettingsChanged):
            v = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
            if v is not None:
                self.enable_connect = v.new_value
        elif isinstance(ev, E.ConnectionTerminated):
            self.closed = True

    def pump(self, cond, timeout=30.0, what="condition"):
        """Moves bytes until cond() is true; Fatal after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._feed_out()
            if cond():
                if self.wbuf:
                    self._flush(deadline)
                return
            if self.closed:
                raise Fatal("hub closed the connection while waiting for %s" % what)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fatal("timed out waiting for %s" % what)
            wl = [self.sock] if self.wbuf else []
            if self.sock.pending() == 0:
                select.select([self.sock], wl, [], min(left, 0.5))
            if self.wbuf:
                try:
                    n = self.sock.send(self.wbuf[:1 << 20])
                    del self.wbuf[:n]
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    pass
                except OSError:  # ssl.SSLEOFError and resets: the hub closed
                    self.closed = True
                    self.wbuf.clear()
            self._read()

    def _flush(self, deadline):
        while self.wbuf and time.monotonic() < deadline:
            select.select([], [self.sock], [], 0.5)
            try:
                n = self.sock.send(self.wbuf[:1 << 20])
                del self.wbuf[:n]
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                pass
            except OSError:
                self.closed = True
                return

    def _read(self):
        for _ in range(64):
            try:
                data = self.sock.recv(1 << 18)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except (ConnectionError, OSError):
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            for ev in self.c.receive_data(data):
                self._event(ev)


def start_hub_site(h, site_name, services, hub_conf=None, site_args=()):
    """A hub (hub.conf keys hub_conf set) and the site site_name offering
    services ({name: url}) plus the sample HTTP service as "web", online with
    them. Returns (hub, site)."""
    hub = h.hub()
    hub.init()
    hub.set_conf(**(hub_conf or {}))
    hub.start()
    svc = h.service("svc-" + site_name, site_name=site_name)
    token = hub.site_add(site_name)
    site = h.site(site_name, hub)
    site.enroll(token)
    site.start(dict(services, web=svc.url), site_args)
    h.check(hub.wait_ready(site_name, 20) is not None, "site online with its services")
    return hub, site


# --- services ---


class TcpService:
    """A threaded TCP server on 127.0.0.1; handler(conn) runs per connection."""

    def __init__(self, handler):
        self.handler = handler
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(512)
        self.port = self.ls.getsockname()[1]
        self.accepted = 0
        self.open = 0  # connections being served now
        self.lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True).start()

    @property
    def url(self):
        return "tcp://127.0.0.1:%d" % self.port

    def _loop(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def open_now(self):
        with self.lock:
            return self.open

    def _one(self, c):
        with self.lock:
            self.open += 1
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            c.close()
            with self.lock:
                self.open -= 1


def echo(c):
    while True:
        d = c.recv(1 << 18)
        if not d:
            c.shutdown(socket.SHUT_WR)
            return
        c.sendall(d)


def digest_at_eof(c):
    """Reads to EOF, then answers "<count> <sha256>\\n" and closes."""
    hs, n = hashlib.sha256(), 0
    while True:
        d = c.recv(1 << 18)
        if not d:
            break
        hs.update(d)
        n += len(d)
    c.sendall(b"%d %s\n" % (n, hs.hexdigest().encode()))


class BannerThenRead:
    """Sends a banner and half-closes at once, then reads to EOF and keeps
    what it read (the user may send after the service ended its side)."""

    def __init__(self):
        self.got = []

    def __call__(self, c):
        c.sendall(b"banner\n")
        c.shutdown(socket.SHUT_WR)
        buf = bytearray()
        while True:
            d = c.recv(65536)
            if not d:
                break
            buf += d
        self.got.append(bytes(buf))

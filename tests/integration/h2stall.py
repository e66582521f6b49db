# Minimal raw HTTP/2 clients for tests: a user that stops reading, an uploader that gets stuck.
# SPDX-License-Identifier: MIT
import socket
import ssl
import struct
import time

from h2raw import PREFACE, frame, hpack_new, split_frames
from harness import Fatal

F_DATA, F_HEADERS, F_RST, F_SETTINGS, F_GOAWAY, F_WINDOW = 0x0, 0x1, 0x3, 0x4, 0x7, 0x8


def _connect(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    if s.selected_alpn_protocol() != "h2":
        raise Fatal("hub did not choose h2")
    return s


def _request_block(port, token, method, path):
    return (hpack_new(":method", method) + hpack_new(":scheme", "https") +
            hpack_new(":authority", "127.0.0.1:%d" % port) + hpack_new(":path", path) +
            hpack_new("authorization", "Bearer " + token))


class Uploader:
    """One HTTP/2 connection that sends request bodies as fast as the hub's
    flow-control windows allow, and can give up on (reset) streams."""

    def __init__(self, port, token):
        self.port, self.token = port, token
        self.s = _connect(port)
        self.buf = b""
        self.conn_win = 65535
        self.init_win = 65535
        self.win = {}  # sid -> send window
        self.heads = {}  # sid -> "200" | "other"
        self.next_sid = 1
        self.s.sendall(PREFACE + frame(F_SETTINGS, 0, 0))

    def _pump(self, timeout):
        """Reads once (up to timeout) and handles every whole frame."""
        self.s.settimeout(timeout)
        try:
            b = self.s.recv(65536)
        except socket.timeout:
            return False
        if not b:
            raise Fatal("hub closed the upload connection")
        self.buf += b
        frames, self.buf = split_frames(self.buf)
        for typ, flags, sid, payload in frames:
            if typ == F_SETTINGS and not flags & 1:
                for i in range(0, len(payload) - 5, 6):
                    ident, val = struct.unpack(">HI", payload[i:i + 6])
                    if ident == 4:  # INITIAL_WINDOW_SIZE
                        for k in self.win:
                            self.win[k] += val - self.init_win
                        self.init_win = val
                self.s.sendall(frame(F_SETTINGS, 1, 0))
            elif typ == F_WINDOW:
                inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                if sid == 0:
                    self.conn_win += inc
                elif sid in self.win:
                    self.win[sid] += inc
            elif typ == F_HEADERS and sid not in self.heads:
                self.heads[sid] = "200" if payload[:1] == b"\x88" else "other"
            elif typ == F_GOAWAY:
                raise Fatal("hub sent GOAWAY to an uploader")
        return True

    def open(self, path, n):
        """Starts n POST streams (bodies follow with push)."""
        sids = []
        for _ in range(n):
            sid, self.next_sid = self.next_sid, self.next_sid + 2
            self.win[sid] = self.init_win
            self.s.sendall(frame(F_HEADERS, 0x4, sid,
                                  _request_block(self.port, self.token, "POST", path)))
            sids.append(sid)
        return sids

    def push(self, sids, size, stall_s, end=False):
        """Sends up to size body bytes on each stream, round robin, while the
        windows allow; stops when every stream has sent size bytes (ending
        them if end) or no window opened for stall_s. Returns bytes sent per
        stream."""
        sent = {sid: 0 for sid in sids}
        chunk = b"x" * 16384
        while True:
            moved = False
            for sid in sids:
                n = min(16384, self.conn_win, self.win[sid], size - sent[sid])
                if n <= 0:
                    continue
                last = end and sent[sid] + n == size
                self.s.sendall(frame(F_DATA, 1 if last else 0, sid, chunk[:n]))
                sent[sid] += n
                self.conn_win -= n
                self.win[sid] -= n
                moved = True
            if all(v == size for v in sent.values()):
                return sent
            if not moved and not self._pump(stall_s):
                return sent

    def reset(self, sids):
        for sid in sids:
            self.s.sendall(frame(F_RST, 0, sid, struct.pack(">I", 8)))  # CANCEL

    def wait_head(self, sid, timeout):
        deadline = time.monotonic() + timeout
        while sid not in self.heads and time.monotonic() < deadline:
            self._pump(max(0.05, deadline - time.monotonic()))
        return self.heads.get(sid)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Stall:
    """One HTTP/2 connection that opens n GET streams and, once every stream
    has its answer head (or a reset), stops reading its socket."""

    def __init__(self, port, token, path, n, init_window=None):
        """init_window: SETTINGS_INITIAL_WINDOW_SIZE to announce (0: the hub
        may not send a byte of body)."""
        self.port, self.token, self.path = port, token, path
        self.s = _connect(port)
        self.buf = b""
        self.status = {}  # sid -> "200" | "other" | "reset" (first answer)
        self.resets = set()
        self.sids = []
        settings = b"" if init_window is None else struct.pack(">HI", 4, init_window)
        self.s.sendall(PREFACE + frame(F_SETTINGS, 0, 0, settings))
        self.more(n)

    def more(self, n):
        """Opens n more GET streams."""
        out = []
        for _ in range(n):
            sid = 1 + 2 * len(self.sids)
            self.sids.append(sid)
            block = _request_block(self.port, self.token, "GET", self.path)
            out.append(frame(F_HEADERS, 0x5, sid, block))  # END_STREAM | END_HEADERS
        self.s.sendall(b"".join(out))

    def poll(self, timeout):
        """Reads and handles frames for up to timeout (never grants window)."""
        self._pump(lambda: False, timeout)

    def _pump(self, done, timeout):
        """Reads and handles frames until done() or timeout."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            frames, self.buf = split_frames(self.buf)
            for typ, flags, sid, payload in frames:
                if typ == F_SETTINGS and not flags & 1:
                    self.s.sendall(frame(F_SETTINGS, 1, 0))
                elif typ == F_HEADERS and sid not in self.status:
                    # nghttp2 sends ":status 200" as static index 8 (0x88).
                    self.status[sid] = "200" if payload[:1] == b"\x88" else "other"
                elif typ == F_RST:
                    self.resets.add(sid)
                    self.status.setdefault(sid, "reset")
                elif typ == F_GOAWAY:
                    raise Fatal("hub sent GOAWAY to a stalling client")
            if done():
                break
            self.s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                b = self.s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            self.buf += b

    def wait_heads(self, timeout):
        """Reads frames until each stream got its head or a reset. Returns
        (streams answered 200, others)."""
        self._pump(lambda: len(self.status) >= len(self.sids), timeout)
        return self.count("200"), len(self.sids) - self.count("200")

    def wait_resets(self, n, timeout):
        """Reads on (granting no window) until n streams were reset."""
        self._pump(lambda: len(self.resets) >= n, timeout)
        return len(self.resets)

    def count(self, what):
        return sum(1 for v in self.status.values() if v == what)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def make_user_token(hub, name):
    """A user token for every site; its secret."""
    r = hub.ctl("token", "create", name, "--role", "user", "--sites", "*")
    tok = r.stdout.strip()
    if r.rc != 0 or not tok.startswith("tth_"):
        raise Fatal("token create %s: %r" % (name, r))
    return tok


def settle_rss(proc, timeout=15.0, step_kib=1024):
    """Waits until proc's RSS grows by less than step_kib in half a second
    (the site has filled every stalled stream's window); returns it."""
    last = proc.rss_kib()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = proc.rss_kib()
        if now is None or last is None or now - last < step_kib:
            return now
        last = now
    return last

# A minimal raw HTTP/2 client for tests: opens streams, then stops reading (a stalled user).
# SPDX-License-Identifier: MIT
import socket
import ssl
import struct
import time

from harness import Fatal

F_DATA, F_HEADERS, F_RST, F_SETTINGS, F_GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7


def _frame(typ, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, flags]) + struct.pack(">I", sid) + \
        payload


def _hp_int(n, prefix):
    top = (1 << prefix) - 1
    if n < top:
        return bytes([n])
    out = [top]
    n -= top
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _hp_lit(name, value):
    """Literal header field without indexing, new name, no Huffman."""
    name, value = name.encode(), value.encode()
    return b"\x00" + _hp_int(len(name), 7) + name + _hp_int(len(value), 7) + value


class Stall:
    """One HTTP/2 connection that opens n GET streams and, once every stream
    has its answer head (or a reset), stops reading its socket."""

    def __init__(self, port, token, path, n):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        if self.s.selected_alpn_protocol() != "h2":
            raise Fatal("hub did not choose h2")
        self.buf = b""
        self.status = {}  # sid -> "200" | "other" | "reset" (first answer)
        self.resets = set()
        out = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", _frame(F_SETTINGS, 0, 0)]
        self.sids = [1 + 2 * i for i in range(n)]
        for sid in self.sids:
            block = (_hp_lit(":method", "GET") + _hp_lit(":scheme", "https") +
                     _hp_lit(":authority", "127.0.0.1:%d" % port) + _hp_lit(":path", path) +
                     _hp_lit("authorization", "Bearer " + token))
            out.append(_frame(F_HEADERS, 0x5, sid, block))  # END_STREAM | END_HEADERS
        self.s.sendall(b"".join(out))

    def _pump(self, done, timeout):
        """Reads and handles frames until done() or timeout."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            while len(self.buf) >= 9:
                ln = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + ln:
                    break
                typ, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9:9 + ln]
                self.buf = self.buf[9 + ln:]
                if typ == F_SETTINGS and not flags & 1:
                    self.s.sendall(_frame(F_SETTINGS, 1, 0))
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

# A raw-socket HTTP/1.1 service for the attack suite: records the exact bytes of every request.
# SPDX-License-Identifier: MIT
"""RawService listens on 127.0.0.1 in a thread of the test, frames each
request it receives and records it as bytes, exactly as they arrived, with a
strict verdict: well formed (RFC 9112, no obs-fold, no bare CR or LF, no NUL,
at most one Content-Length, not both Content-Length and Transfer-Encoding,
Transfer-Encoding only "chunked", a valid chunked body) or not. Anything it
cannot frame is recorded as malformed and the connection is closed.

Each request is answered 200 with JSON {"target", "headers": [[name, value],
...]} so a test can also see what arrived through the proxy.
"""

import json
import re
import socket
import threading

TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
REQUEST_LINE = re.compile(rb"^[A-Z]{1,16} [!-~]+ HTTP/1\.1$")
FIELD_LINE = re.compile(rb"^(" + TCHAR + rb"+):[ \t]*([\x21-\x7e\x80-\xff]([\t \x21-\x7e\x80-\xff]*"
                        rb"[\x21-\x7e\x80-\xff])?)?[ \t]*$")
HEAD_MAX = 64 * 1024
BODY_MAX = 16 * 1024 * 1024


class Record:
    def __init__(self, conn_id, raw, ok, why, target=None, headers=None):
        self.conn_id = conn_id
        self.raw = raw
        self.ok = ok
        self.why = why
        self.target = target
        self.headers = headers or []

    def header(self, name):
        """All values of a header (case-insensitive name)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "Record(conn=%d ok=%s why=%r raw=%r)" % (self.conn_id, self.ok, self.why,
                                                         self.raw[:300])


class _Malformed(Exception):
    pass


def _check_head(head):
    """head: bytes up to and without the final CRLF CRLF. Returns (target,
    headers) or raises _Malformed."""
    if b"\0" in head:
        raise _Malformed("NUL in the head")
    lines = head.split(b"\r\n")
    for ln in lines:
        if b"\r" in ln or b"\n" in ln:
            raise _Malformed("bare CR or LF")
    if not REQUEST_LINE.match(lines[0]):
        raise _Malformed("bad request line %r" % lines[0][:100])
    headers = []
    for ln in lines[1:]:
        if ln[:1] in (b" ", b"\t"):
            raise _Malformed("obs-fold")
        m = FIELD_LINE.match(ln)
        if not m:
            raise _Malformed("bad field line %r" % ln[:100])
        headers.append((m.group(1).decode("latin-1"), (m.group(2) or b"").decode("latin-1")))
    return lines[0].split(b" ")[1].decode("latin-1"), headers


class _Conn:
    def __init__(self, svc, sock, conn_id):
        self.svc = svc
        self.sock = sock
        self.id = conn_id
        self.buf = b""

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def _take_until(self, sep, limit):
        while sep not in self.buf:
            if len(self.buf) > limit:
                raise _Malformed("no %r within %d bytes" % (sep, limit))
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _chunked(self):
        raw = b""
        while True:
            line = self._take_until(b"\r\n", 1024)
            raw += line
            size = line[:-2].split(b";", 1)[0]
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size) or int(size, 16) > BODY_MAX:
                raise _Malformed("bad chunk size %r" % line[:40])
            n = int(size, 16)
            if n == 0:
                while True:  # trailers, then the empty line
                    t = self._take_until(b"\r\n", HEAD_MAX)
                    raw += t
                    if t == b"\r\n":
                        return raw
                    if not FIELD_LINE.match(t[:-2]):
                        raise _Malformed("bad trailer")
            data = self._take(n + 2)
            raw += data
            if data[-2:] != b"\r\n":
                raise _Malformed("chunk not followed by CRLF")

    def _one(self):
        head = b""
        try:
            head = self._take_until(b"\r\n\r\n", HEAD_MAX)
            target, headers = _check_head(head[:-4])
            names = [k.lower() for k, _ in headers]
            cls = [v for k, v in headers if k.lower() == "content-length"]
            tes = [v for k, v in headers if k.lower() == "transfer-encoding"]
            if len(cls) > 1:
                raise _Malformed("two Content-Length")
            if cls and tes:
                raise _Malformed("Content-Length and Transfer-Encoding")
            if names.count("host") != 1:
                raise _Malformed("not exactly one Host")
            if tes:
                if len(tes) != 1 or tes[0].lower() != "chunked":
                    raise _Malformed("Transfer-Encoding %r" % tes)
                body = self._chunked()
            elif cls:
                if not re.fullmatch(r"[0-9]{1,15}", cls[0]):
                    raise _Malformed("bad Content-Length %r" % cls[0])
                body = self._take(int(cls[0]))
            else:
                body = b""
        except _Malformed as e:
            self.svc._add(Record(self.id, head + self.buf, False, str(e)))
            return False
        except EOFError:
            if head or self.buf:
                self.svc._add(Record(self.id, head + self.buf, False, "truncated"))
            return False
        self.svc._add(Record(self.id, head + body, True, "", target, headers))
        out = json.dumps({"target": target, "headers": headers}).encode()
        self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(out) + out)
        return True

    def run(self):
        try:
            while self._one():
                pass
        except OSError:
            pass
        finally:
            self.sock.close()


class RawService:
    """Records every request; records() returns them in arrival order."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self._records = []
        self._n_conns = 0
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self._n_conns += 1
                cid = self._n_conns
            threading.Thread(target=_Conn(self, s, cid).run, daemon=True).start()

    def _add(self, rec):
        with self.lock:
            self._records.append(rec)

    def mark(self):
        with self.lock:
            return len(self._records)

    def records(self, since=0):
        with self.lock:
            return list(self._records[since:])

    def close(self):
        self.lsock.close()


# ---------------------------------------------------------------------------
# The common stage of the attack tests that use a RawService.

BYSTANDER = "bystander"


def make_token(hub, name, *args):
    r = hub.ctl("token", "create", name, *args)
    tok = r.stdout.strip()
    if r.rc != 0 or not tok.startswith("tth_"):
        raise RuntimeError("token create %s: %r" % (name, r))
    return tok


def stage(h, site_name, services, hub_args=()):
    """A hub, the attacked site offering services ({name: url}), a second
    site (BYSTANDER, the sample service as "web") and a user token "bob" for
    both. Returns (hub, site, bob_token)."""
    hub, site, _svc = h.setup(site_name, hub_args=hub_args, services=services)
    h.add_site(hub, BYSTANDER, timeout=10)
    bob = make_token(hub, "bob", "--role", "user", "--sites", "%s,%s" % (site_name, BYSTANDER))
    return hub, site, bob


def others_served(h, hub, bob, site_name, service, what):
    """Another user (bob) is served by the attacked site and by another site."""
    r = hub.proxy(site_name, service, "/bob-check", token=bob)
    j = r.json() or {}
    h.check(r.status == 200 and j.get("target", "").endswith("/bob-check"),
            "%s: another user is served by the attacked site" % what, r)
    r = hub.proxy(BYSTANDER, "web", "/healthz", token=bob)
    h.check(r.status == 200 and r.body == b"ok\n", "%s: another site is served" % what, r)

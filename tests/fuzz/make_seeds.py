#!/usr/bin/env python3
# Writes the seed inputs of tests/fuzz/corpus/ that are generated rather than hand-written (real TLS
# ClientHellos, real certificates, tokens). Run once; the output is checked in.
# SPDX-License-Identifier: MIT
import base64, hashlib, json, os, ssl, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
C = os.path.join(HERE, "corpus")
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from h2raw import frame, hpack_block  # noqa: E402


def put(target, name, data):
    d = os.path.join(C, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def clienthello(sni, alpn, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn)
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(i, o, server_hostname=sni)
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return o.read()


def certs():
    out = []
    with tempfile.TemporaryDirectory() as t:
        for name, args in (("p256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                           ("rsa2048", ["-newkey", "rsa:2048"]),
                           ("ed25519", ["-newkey", "ed25519"])):
            key, crt = os.path.join(t, name + ".key"), os.path.join(t, name + ".der")
            subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "1", "-subj",
                            "/CN=tether-hub", "-addext", "subjectAltName=DNS:hub,IP:127.0.0.1",
                            "-keyout", key, "-outform", "DER", "-out", crt] + args,
                           check=True, capture_output=True)
            out.append((name, open(crt, "rb").read()))
    return out


def main():
    hellos = [("tunnel", "hub.example", ["tether/1"], False),
              ("h2", "hub.example", ["h2", "http/1.1"], False),
              ("http11-tls12", "127.0.0.1", ["http/1.1"], True),
              ("nosni-noalpn", None, None, False)]
    for name, sni, alpn, t12 in hellos:
        put("clienthello", name, clienthello(sni, alpn, t12))
    # The same hello split over two records, as some clients send it.
    h = clienthello("split.example", ["h2"])
    body = h[5:]
    put("clienthello", "two-records",
        h[:3] + len(body[:40]).to_bytes(2, "big") + body[:40] + h[:3] +
        len(body[40:]).to_bytes(2, "big") + body[40:])
    for name, der in certs():
        put("spki", name + ".der", der)
    pin = "sha256//" + base64.b64encode(hashlib.sha256(b"k").digest()).decode()
    for name, hubs in (("one-hub", ["hub.example:6443"]),
                       ("v6-and-two", ["[::1]:6443", "10.0.0.1:443"])):
        tok = {"v": 1, "site": "edge-1", "hubs": hubs, "pin": pin,
               "secret": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
               "exp": 1900000000}
        put("token", name, "tether1." +
            base64.urlsafe_b64encode(json.dumps(tok).encode()).decode().rstrip("="))
    h2_seeds()


ADMIN = "tth_ZnV6ei1hZG1pbi1mdXp6LWFkbWluLWZ1enotYWRtaW4"  # tests/fuzz/fake_hub.h


def h2_request(sid, method, path, body=None, token=True, extra=()):
    hs = [(":method", method), (":scheme", "https"), (":authority", "hub"), (":path", path)]
    if token:
        hs.append(("authorization", "Bearer " + ADMIN))
    hs += list(extra)
    out = frame(1, 0x4 | (0 if body is not None else 0x1), sid, hpack_block(hs))
    if body is not None:
        out += frame(0, 0x1, sid, body.encode())
    return out


def h2_seeds():
    settings = frame(4, 0, 0, (3).to_bytes(2, "big") + (100).to_bytes(4, "big"))
    # The first byte is the piece size of the fuzz target (0: all at once).
    put("h2", "healthz", b"\x00" + settings + h2_request(1, "GET", "/healthz", token=False))
    put("h2", "api-three-streams", b"\x00" + settings + h2_request(1, "GET", "/v1/sites") +
        h2_request(3, "POST", "/v1/sites", '{"name":"edge-7"}',
                   extra=[("content-type", "application/json")]) +
        h2_request(5, "GET", "/v1/sites/edge-1/services/web/x"))
    put("h2", "ping-window-rst", b"\x07" + settings + frame(6, 0, 0, b"12345678") +
        frame(8, 0, 0, (65536).to_bytes(4, "big")) + h2_request(1, "GET", "/v1/audit") +
        frame(3, 0, 1, (8).to_bytes(4, "big")) + frame(7, 0, 0, bytes(8)))


if __name__ == "__main__":
    sys.exit(main())

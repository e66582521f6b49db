#!/usr/bin/env python3
# Integration: https:// services behind a site: CA, name, dates, pins, insecure, SNI and mTLS.
# SPDX-License-Identifier: MIT
"""Real HTTPS servers (python's http.server in ssl) with certificates made here
by openssl: a test CA, a good server certificate (localhost, 127.0.0.1), an
expired one, one for another name, one from a CA the site does not know, and a
server that requires a client certificate from a client CA. Each check is a
request through the hub to a service of one site."""
import hashlib
import http.server
import os
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, free_port, openssl_pin  # noqa: E402

SITE = "clinic-a"

CA_CNF = """[ ca ]
default_ca = d
[ d ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/new
serial = {dir}/serial
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[ any ]
commonName = supplied
[ server ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
[ client ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""


class Pki:
    def __init__(self, h):
        self.h = h
        self.dir = h.mkdir("pki")

    def _run(self, argv):
        r = subprocess.run(argv, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.decode(errors="replace")))

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, name):
        self._run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.path(name + ".key"),
                   "-out", self.path(name + ".crt"), "-subj", "/CN=tether test " + name,
                   "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        d = self.path(name + ".db")
        os.makedirs(os.path.join(d, "new"))
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        return name

    def cert(self, name, ca, san=None, client=False, start="20250101000000Z",
             end="20400101000000Z"):
        d = self.path(ca + ".db")
        cnf = os.path.join(d, name + ".cnf")
        with open(cnf, "w") as f:
            f.write(CA_CNF.format(dir=d, san=san or "DNS:unused.invalid"))
        csr = self.path(name + ".csr")
        self._run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.path(name + ".key"),
                   "-out", csr, "-subj", "/CN=" + name])
        self._run(["openssl", "ca", "-batch", "-notext", "-config", cnf, "-cert",
                   self.path(ca + ".crt"), "-keyfile", self.path(ca + ".key"), "-in", csr,
                   "-out", self.path(name + ".crt"), "-startdate", start, "-enddate", end,
                   "-extensions", "client" if client else "server"])
        return self.path(name + ".crt"), self.path(name + ".key")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/big"):
            n = int(self.path.split("=")[1])
            self._send(bytes(i % 251 for i in range(n)))
            return
        self._send(("hello from %s %s" % (self.server.label, self.path)).encode())

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        self._send(hashlib.sha256(data).hexdigest().encode())


class TlsServer:
    """HTTPS on 127.0.0.1; records the SNI each handshake carried."""

    def __init__(self, label, cert, key, client_ca=None):
        self.sni = []
        self.port = free_port()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        ctx.sni_callback = lambda sock, name, c: self.sni.append(name) and None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.label = label
        self.httpd.handle_error = lambda req, addr: None  # refused handshakes are expected
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def main(h):
    h.require(tools=("openssl",))
    pki = Pki(h)
    pki.ca("ca")
    pki.ca("rogue")
    pki.ca("clientca")
    good = pki.cert("good", "ca", "DNS:localhost,IP:127.0.0.1")
    expired = pki.cert("expired", "ca", "DNS:localhost,IP:127.0.0.1", start="20200101000000Z",
                       end="20200201000000Z")
    wrong = pki.cert("wrong", "ca", "DNS:wrong.example,IP:127.0.0.2")
    unknown = pki.cert("unknown", "rogue", "DNS:localhost,IP:127.0.0.1")
    client = pki.cert("client", "clientca", client=True)
    ca = pki.path("ca.crt")

    s_good = TlsServer("good", *good)
    s_exp = TlsServer("expired", *expired)
    s_wrong = TlsServer("wrong", *wrong)
    s_unknown = TlsServer("unknown", *unknown)
    s_mtls = TlsServer("mtls", *good, client_ca=pki.path("clientca.crt"))
    plain = h.service("plain")  # speaks HTTP, not TLS
    pin_unknown = openssl_pin(unknown[0])
    h.check(pin_unknown, "openssl computes the pin of the rogue certificate")

    hub = h.hub()
    hub.init()
    hub.start()
    token = hub.site_add(SITE)
    site = h.site(SITE, hub)
    site.enroll(token)

    def url(host, srv):
        return "https://%s:%d" % (host, srv.port)

    services = {
        "good": url("localhost", s_good),
        "goodip": url("127.0.0.1", s_good),
        "system": url("localhost", s_good),
        "unknown": url("localhost", s_unknown),
        "wrongname": url("localhost", s_wrong),
        "wrongip": url("127.0.0.1", s_wrong),
        "expired": url("localhost", s_exp),
        "pinbad": url("localhost", s_good),
        "insecure": url("localhost", s_wrong),
        "mtlsnone": url("localhost", s_mtls),
        "mtls": url("localhost", s_mtls),
        "plain": "https://127.0.0.1:%d" % plain.port,
        "byname": url("127.0.0.1", s_wrong),
    }
    opts = ["good:ca=" + ca, "goodip:ca=" + ca, "unknown:ca=" + ca, "wrongname:ca=" + ca,
            "wrongip:ca=" + ca, "expired:ca=" + ca, "pinbad:pin=" + pin_unknown,
            "insecure:insecure", "mtlsnone:ca=" + ca, "mtls:ca=" + ca,
            "mtls:cert=" + client[0], "mtls:key=" + client[1], "plain:insecure",
            "byname:ca=" + ca, "byname:name=wrong.example"]

    # Contradicting or misplaced options stop the start with a reason.
    base = [h.bin("tether-site"), "run", "--state", site.dir]
    r = h.run(base + ["--service", "x=" + url("localhost", s_good), "--service-opt",
                      "x:insecure", "--service-opt", "x:ca=" + ca])
    h.check(r.rc != 0 and "insecure excludes ca" in r.stderr, "insecure with ca= is refused", r)
    r = h.run(base + ["--service-opt", "nosuch:insecure"])
    h.check(r.rc == 2 and "no service" in r.stderr, "an option for an unknown service is refused",
            r)
    r = h.run(base + ["--service", "x=http://127.0.0.1:1", "--service-opt", "x:insecure"])
    h.check(r.rc == 2 and "not https" in r.stderr, "TLS options on an http:// service are refused",
            r)
    r = h.run(base + ["--service", "x=" + url("localhost", s_good), "--service-opt",
                      "x:ca=" + pki.path("missing.crt")])
    h.check(r.rc == 1 and "cannot load CA certificates" in r.stderr,
            "an unreadable CA file stops the start", r)

    # The pinned service comes from a --config file: site.conf's keys.
    conf = h.path("extra.conf")
    with open(conf, "w") as f:
        f.write("service = pinok=%s\nservice_opt = pinok:pin=%s\n" % (url("localhost", s_unknown),
                                                                     pin_unknown))
    extra = ["--config", conf]
    for o in opts:
        extra += ["--service-opt", o]
    site.start(services, extra=extra)
    h.check(site.proc.find(r"\bservice_insecure\b.*\bservice=insecure\b.*NOT checked"),
            "the insecure service is logged loudly at start")
    h.check(hub.wait_ready(SITE, 10) is not None, "site online")

    def get(svc, path="/x"):
        return hub.proxy(SITE, svc, path)

    def detail(r):
        try:
            return r.json().get("detail", "")
        except Exception:
            return ""

    r = get("good", "/a")
    h.check(r.status == 200 and r.body == b"hello from good /a", "ca= and a good certificate: 200 "
            "and the body", r)
    h.check(s_good.sni[-1:] == ["localhost"], "SNI received by the service is the host name",
            s_good.sni)
    n_sni = len(s_good.sni)
    r = get("good", "/b")
    h.check(r.status == 200 and r.body == b"hello from good /b", "a second request works", r)
    h.check(len(s_good.sni) == n_sni, "it reused the kept-alive TLS connection (no new "
            "handshake), session tickets and all", s_good.sni)
    r = get("goodip", "/c")
    h.check(r.status == 200 and r.body == b"hello from good /c",
            "an IP literal is checked against the certificate's IP SAN: 200", r)
    h.check(len(s_good.sni) >= n_sni + 1 and s_good.sni[-1] is None,
            "no SNI is sent for an IP literal", s_good.sni)

    r = get("good", "/big?n=%d" % (3 << 20))
    h.check(r.status == 200 and r.body == bytes(i % 251 for i in range(3 << 20)),
            "3 MiB response over TLS arrives intact", (r.status, len(r.body)))
    payload = os.urandom(5 << 20)
    r = hub.proxy(SITE, "good", "/up", method="POST", data=payload,
                  headers={"Content-Type": "application/octet-stream"})
    h.check(r.status == 200 and r.body.decode() == hashlib.sha256(payload).hexdigest(),
            "5 MiB request body over TLS reaches the service intact (SHA-256)", r)

    cases = [
        ("system", "unknown CA", "system CAs only: the test CA is unknown"),
        ("unknown", "unknown CA", "certificate from another CA"),
        ("wrongname", "name mismatch", "certificate for another name"),
        ("wrongip", "name mismatch", "certificate without the IP"),
        ("expired", "expired", "expired certificate"),
        ("pinbad", "pin mismatch", "pin of another key"),
    ]
    for svc, want, what in cases:
        mark = site.proc.mark()
        r = get(svc)
        h.check(r.status == 502 and want in detail(r),
                "%s: 502 whose detail says %r" % (what, want), (r, detail(r)))
        site.proc.wait_log(r"\bupstream_error\b.*\bservice=%s\b" % svc, 5, since=mark,
                           fatal=False)
        lines = [ln for ln in site.proc.text(since=mark).splitlines()
                 if "service=%s " % svc in ln and "upstream_error" in ln]
        h.check(len(lines) == 1 and want in lines[0], "%s: the site logs one line" % svc, lines)

    r = get("pinok", "/p")
    h.check(r.status == 200 and r.body == b"hello from unknown /p",
            "the right pin works without any CA (from the --config file)", r)
    n = len(s_wrong.sni)
    r = get("byname", "/n")
    h.check(r.status == 200 and r.body == b"hello from wrong /n",
            "name= checks the certificate against that name though the URL is an IP: 200", r)
    h.check(s_wrong.sni[n:] == ["wrong.example"], "and sends it as SNI", s_wrong.sni)
    r = get("insecure", "/i")
    h.check(r.status == 200 and r.body == b"hello from wrong /i",
            "insecure works against a certificate for another name", r)

    r = get("mtlsnone")
    h.check(r.status == 502, "mTLS service without a client certificate: 502", (r, detail(r)))
    h.check("TLS" in detail(r), "the detail says TLS failed", detail(r))
    r = get("mtls", "/m")
    h.check(r.status == 200 and r.body == b"hello from mtls /m",
            "mTLS service with the client certificate: 200", r)

    r = get("plain")
    h.check(r.status == 502 and detail(r).startswith("TLS handshake failed"),
            "a service that does not speak TLS: 502, the handshake failed", (r, detail(r)))

    r = get("good", "/after")
    h.check(r.status == 200, "the good service still works after the failures", r)
    h.check(site.proc.alive(), "the site is still running")


if __name__ == "__main__":
    Harness.main("https_service", main, tools=("curl", "openssl"))

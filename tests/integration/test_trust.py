#!/usr/bin/env python3
# Integration: unknown keys refused in the handshake, one-time tokens, hub pin checked.
# SPDX-License-Identifier: MIT
import os
import re
import shutil
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal, edit_conf, read_conf, tls_connect  # noqa: E402

SITE = "trust-a"


def dial_tunnel(h, hub, cert=None, key=None, label=""):
    """Dials the hub with ALPN tether/1 and the given client certificate.
    Returns (refused, what): refused is True when the handshake failed or the
    connection closed without a single byte from the hub."""
    try:
        s = tls_connect(hub.port, alpn=("tether/1",), cert=cert, key=key, timeout=10)
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return True, "handshake failed: %s" % e
    got = b""
    what = None
    try:
        s.settimeout(5.0)
        # With TLS 1.3 the server checks the client certificate after the
        # client has finished its side; its verdict comes as an alert or EOF.
        # An accepted tunnel would get the hub's HTTP/2 preface (hub = client).
        while True:
            b = s.recv(4096)
            if not b:
                what = "closed by the hub without data"
                break
            got += b
            if len(got) >= 24:
                break
    except socket.timeout:
        what = "still open after 5 s"
    except (ssl.SSLError, ConnectionError, OSError) as e:
        what = "refused after handshake: %s" % e
    finally:
        s.close()
    if got:
        return False, "hub sent %d bytes: %r" % (len(got), got[:40])
    return what != "still open after 5 s", what


def main(h):
    # A properly enrolled site connects: the refusals below are about keys.
    hub, site, svc = h.setup(SITE)
    token = site.enroll_token
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "enrolled site serves through the hub", r)

    # --- 1. enrollment token is single-use ---------------------------------
    again = h.site(SITE, hub, dirname="site-reuse")
    r = again.enroll(token, check=False)
    h.check(r.rc != 0, "second enroll with the same token exits non-zero", r)
    msg = r.stderr.strip()
    h.check(msg and re.search(r"used|already", msg, re.I),
            "second enroll says the token was already used", msg)
    h.check(not os.path.exists(again.conf_path), "a failed enroll writes no site.conf")
    r = hub.ctl("site", "add", SITE)
    h.check(r.rc != 0 and r.stderr.strip(), "site add of a taken name fails with a message", r)

    # --- 2. a key the hub does not know is refused in the handshake ---------
    # (a) a key made by openssl.
    if shutil.which("openssl"):
        key, crt = h.path("rogue.key"), h.path("rogue.crt")
        r = h.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                   "-subj", "/CN=%s" % SITE])
        if r.rc != 0:
            raise Fatal("openssl could not make a key: %r" % r)
        mark = hub.proc.mark()
        refused, what = dial_tunnel(h, hub, crt, key)
        h.info("unregistered key: %s" % what)
        h.check(refused, "unregistered key (openssl) refused before any HTTP/2 byte", what)
        h.check(hub.proc.wait_log(r"\btunnel_refused\b", 5, since=mark, fatal=False),
                "hub logs tunnel_refused for the unregistered key")
    else:
        h.info("openssl missing: skipped the openssl-made key case")

    # (b) no client certificate at all on a tunnel ALPN.
    mark = hub.proc.mark()
    refused, what = dial_tunnel(h, hub)
    h.info("no certificate: %s" % what)
    h.check(refused, "tether/1 without a client certificate is refused", what)
    h.check(hub.proc.wait_log(r"\btunnel_refused\b", 5, since=mark, fatal=False),
            "hub logs tunnel_refused for a tunnel without certificate")

    # (c) a real site enrolled at ANOTHER hub, pointed at this one.
    hub2 = h.hub("hub2")
    hub2.init()
    hub2.start()
    tok2 = hub2.site_add(SITE)
    stranger = h.site(SITE, hub2, dirname="site-stranger")
    stranger.enroll(tok2)
    conf = read_conf(stranger.conf_path)
    h.check("hub" in conf and "hub_pin" in conf, "site.conf has hub and hub_pin keys",
            sorted(conf))
    edit_conf(stranger.conf_path, "hub", hub.addr)
    edit_conf(stranger.conf_path, "hub_pin", hub.pin)
    mark = hub.proc.mark()
    stranger.start({"web": svc.url}, wait=False)
    h.check(hub.proc.wait_log(r"\btunnel_refused\b", 10, since=mark, fatal=False),
            "hub logs tunnel_refused for a site key registered at another hub")
    # The stranger's own verdict on that attempt: it failed, and it backs off.
    h.check(stranger.proc.wait_log(r"\breconnect_in\b", 10, fatal=False),
            "the stranger logs the failed attempt and schedules a retry")
    h.check(not hub.proc.find(r"\bsite_connected\b", since=mark),
            "the stranger never gets site_connected")
    h.check(not stranger.proc.find(r"\bconnected hub="), "the stranger never logs connected")
    stranger.proc.stop()

    # --- 3. a site whose hub pin is wrong refuses the hub -------------------
    # Same site identity, but the pin of hub2 instead of hub.
    site.proc.stop()
    hub.proc.wait_log(r"\bsite_disconnected\b.*\bsite=%s\b" % SITE, 10, fatal=False)
    good_conf = open(site.conf_path).read()
    edit_conf(site.conf_path, "hub_pin", hub2.pin)
    mark = hub.proc.mark()
    p = site.start({"web": svc.url}, wait=False)
    m = p.wait_log(r"pin", 10, fatal=False)
    h.check(m, "site with a wrong hub pin logs a line about the pin")
    # Both ends are done with that attempt: the site backs off, the hub
    # logged the aborted tunnel handshake.
    h.check(p.wait_log(r"\breconnect_in\b", 10, fatal=False),
            "site with a wrong hub pin schedules a retry")
    h.check(hub.proc.wait_log(r"\btunnel_refused\b", 10, since=mark, fatal=False),
            "hub logs tunnel_refused for the handshake the site aborted")
    h.check(not p.find(r"\bconnected hub="), "site with a wrong hub pin never logs connected")
    h.check(not hub.proc.find(r"\bsite_connected\b", since=mark),
            "hub never sees the site with the wrong pin connect")
    s = hub.sites().get(SITE)
    h.check(s is not None and not s.get("online"), "site with a wrong pin is offline", s)
    p.stop()

    # Put the right pin back: the same identity connects again.
    with open(site.conf_path, "w") as f:
        f.write(good_conf)
    site.start({"web": svc.url})
    h.check(hub.wait_ready(SITE, 10), "with the right pin the site is online again")
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "and serves again", r)
    h.check(hub.proc.alive(), "hub still running")


if __name__ == "__main__":
    Harness.main("trust", main)

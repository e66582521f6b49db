#!/usr/bin/env python3
# Integration: tether-site rotate-key proves the old key, the hub swaps the pin and cuts the old tunnel; old key refused, new accepted; forged proofs refused.
# SPDX-License-Identifier: MIT
import base64
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal, cert_der, closed_port, openssl_pin, tls_connect  # noqa: E402

SITE = "ops-rot"


def dial_tunnel(hub, cert, key):
    """True when the hub refuses a tunnel handshake with this key (no HTTP/2
    byte ever comes back)."""
    try:
        s = tls_connect(hub.port, alpn=("tether/1",), cert=cert, key=key, timeout=10)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    got = b""
    try:
        s.settimeout(5.0)
        while len(got) < 24:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except socket.timeout:
        return False
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    finally:
        s.close()
    return not got


def sign(h, key_pem, msg):
    r = h.run(["openssl", "dgst", "-sha256", "-sign", key_pem], stdin=msg.encode())
    if r.rc != 0:
        raise Fatal("openssl dgst -sign failed: %r" % r)
    return r.out


def make_key(h, name):
    key, crt = h.path(name + ".key"), h.path(name + ".crt")
    r = h.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=%s" % SITE])
    if r.rc != 0:
        raise Fatal("openssl req failed: %r" % r)
    return key, crt


def forged(h, hub, old, new, ts=None, msg_site=SITE, sign_old=None):
    """POST /v1/sites/SITE/rotate built by hand: old and new are (key, crt)."""
    ts = int(time.time()) if ts is None else ts
    new_pin = openssl_pin(new[1])
    msg = "tether-rotate\n%s\n%s\n%d" % (msg_site, new_pin, ts)
    body = {"old_cert": base64.b64encode(cert_der(old[1])).decode(),
            "new_cert": base64.b64encode(cert_der(new[1])).decode(), "ts": ts,
            "sig": base64.b64encode(sign(h, sign_old or old[0], msg)).decode(),
            "new_sig": base64.b64encode(sign(h, new[0], msg)).decode()}
    return hub.api("POST", "/v1/sites/%s/rotate" % SITE, body, token=None)


def rotate(h, site, *extra):
    return h.run([h.bin("tether-site"), "rotate-key", "--state", site.dir] + list(extra),
                 timeout=60)


def main(h):
    h.require(tools=("openssl",))
    hub, site, svc = h.setup(SITE, hub_args=["--ping-interval", "1"],
                             site_args=["--ping-interval", "1"])
    key, crt = os.path.join(site.dir, "site.key"), os.path.join(site.dir, "site.crt")
    old = (h.path("old.key"), h.path("old.crt"))
    shutil.copy(key, old[0])
    shutil.copy(crt, old[1])
    old_pin = openssl_pin(crt)
    h.check(hub.site_show(SITE).get("pin") == old_pin, "the hub holds the site's pin", old_pin)
    rogue = make_key(h, "rogue")
    fresh = make_key(h, "fresh")

    # --- forged requests while the real key is in place ---------------------
    r = forged(h, hub, rogue, fresh)
    h.check(r.status == 403 and "does not hold" in (r.json() or {}).get("detail", ""),
            "a key the hub does not hold cannot rotate", r)
    r = forged(h, hub, old, fresh, ts=int(time.time()) - 1000)
    h.check(r.status == 403 and "clock" in (r.json() or {}).get("detail", ""),
            "a proof 1000 s old is refused", r)
    r = forged(h, hub, old, fresh, msg_site="other-site")
    h.check(r.status == 403 and "proof" in (r.json() or {}).get("detail", ""),
            "a signature over another statement is refused", r)
    r = forged(h, hub, old, fresh, sign_old=rogue[0])
    h.check(r.status == 403, "a signature by another key is refused", r)
    r = hub.api("POST", "/v1/sites/%s/rotate" % SITE, {"old_cert": "!!"}, token=None)
    h.check(r.status == 400, "a malformed request is 400", r)
    h.check(hub.site_show(SITE).get("pin") == old_pin, "the pin is unchanged by all that")
    h.check(hub.proxy(SITE, "web", "/healthz").status == 200, "the site still serves")

    # --- hub unreachable: nothing changes, the new key waits -----------------
    r = rotate(h, site, "--hub", "127.0.0.1:%d" % closed_port())
    pending = os.path.join(site.dir, "site.new.crt")
    h.check(r.rc == 1 and "could not reach" in r.stderr and os.path.exists(pending),
            "rotate-key with the hub unreachable fails and keeps the pending key", r)
    h.check(openssl_pin(crt) == old_pin, "site.crt unchanged")
    pending_pin = openssl_pin(pending)

    # --- the real rotation, with the agent running ---------------------------
    hub_mark, site_mark = hub.proc.mark(), site.proc.mark()
    r = rotate(h, site)
    t_done = time.monotonic()
    h.check(r.rc == 0 and "resuming" in r.stderr, "rotate-key resumes and succeeds", r)
    new_pin = openssl_pin(crt)
    h.check(new_pin == pending_pin and new_pin != old_pin and new_pin in r.stdout,
            "the new key is the pending one and now in site.crt", (old_pin, new_pin))
    h.check(not os.path.exists(pending) and
            not os.path.exists(os.path.join(site.dir, "site.new.key")),
            "no pending files left")
    h.check(oct(os.stat(key).st_mode & 0o777) == "0o600", "site.key is 0600")
    h.check(hub.site_show(SITE).get("pin") == new_pin, "the hub now holds the new pin")
    h.check(hub.proc.wait_log(r"\bsite_key_rotated\b.*\bsite=%s\b" % SITE, 2, since=hub_mark,
                              fatal=False), "hub logs site_key_rotated")
    m = hub.proc.wait_log(r"\bsite_disconnected\b.*\bsite=%s\b.*key rotated" % SITE, 1.0,
                          since=hub_mark, fatal=False)
    h.check(m, "the tunnel authenticated by the old key is cut within 1 s (%.2f s)" % (
        time.monotonic() - t_done))

    # --- old key refused, new key accepted -----------------------------------
    mark = hub.proc.mark()
    h.check(dial_tunnel(hub, old[1], old[0]), "a tunnel with the old key is refused")
    h.check(hub.proc.wait_log(r"\btunnel_refused\b.*pin=%s" % old_pin.replace("+", r"\+"), 5,
                              since=mark, fatal=False), "hub logs tunnel_refused for the old pin")
    # The agent was never restarted: it loads the new key before its next dial.
    h.check(site.proc.alive() and hub.proc.wait_log(
        r"\bsite_connected\b.*\bsite=%s\b" % SITE, 10, since=hub_mark, fatal=False),
        "the running agent reconnects by itself with the new key")
    h.check(site.proc.wait_log(r"\bsite_key_reloaded\b.*\bpin=%s" % re.escape(new_pin), 2,
                               fatal=False), "the agent logs site_key_reloaded with the new pin")
    h.check(hub.wait_ready(SITE, 10), "the site is online with its new key")
    h.check(hub.site_show(SITE).get("pin") == new_pin, "still the new pin")
    h.check(hub.proxy(SITE, "web", "/healthz").status == 200, "and serves")
    sess = hub.site_show(SITE).get("sessions") or []
    h.check(any(s.get("reason") == "key rotated" for s in sess), "history says 'key rotated'",
            sess)

    # The old key can no longer rotate (no replay of a possession proof).
    r = forged(h, hub, old, fresh)
    h.check(r.status == 403, "the retired key cannot rotate again", r)
    rows = hub.ctl_json("audit", "--limit", "100").get("entries", [])
    rot = [e for e in rows if e.get("action") == "site.rotate" and e.get("target") == SITE]
    h.check(len([e for e in rot if e.get("result") == "ok"]) == 1 and
            len([e for e in rot if e.get("result") == "forbidden"]) >= 4 and
            all(e.get("actor") == "site:" + SITE for e in rot),
            "every rotation attempt is audited", rot)


Harness.main("test_ops_rotate", main)

#!/usr/bin/env python3
# Integration: hub + site + service: registry view, methods, header hygiene, HTTP/1.1 and 2.
# SPDX-License-Identifier: MIT
import os
import re
import signal
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, openssl_pin  # noqa: E402

SITE = "clinic-a"


def main(h):
    hub = h.hub()
    hub.init()
    mode = stat.S_IMODE(os.stat(os.path.join(hub.dir, "admin.token")).st_mode)
    h.check(mode == 0o600, "admin.token has mode 0600", oct(mode))
    h.check(re.match(r"^sha256//[A-Za-z0-9+/]{43}=$", hub.pin or ""), "ctl.conf hub_pin looks like "
            "sha256//BASE64", hub.pin)
    h.check((hub.token or "").startswith("tth_"), "ctl.conf token starts with tth_")
    want_pin = openssl_pin(os.path.join(hub.dir, "hub.crt"))
    if want_pin:
        h.check(want_pin == hub.pin, "ctl.conf hub_pin is the SPKI pin of hub.crt",
                "%s vs %s" % (hub.pin, want_pin))
    r = h.run([h.bin("tether-hub"), "init", "--state", hub.dir, "--name", "127.0.0.1"])
    h.check(r.rc != 0 and r.stderr.strip(), "tether-hub init refuses to overwrite a state "
            "(non-zero exit, message on stderr)", r)

    hub.start()
    hc = hub.curl("/healthz", token=None)
    h.check(hc.status == 200 and hc.body.strip() == b"ok", "GET /healthz without token is 200 ok",
            hc)

    svc = h.service("svc", site_name=SITE)
    token = hub.site_add(SITE)
    h.check(token.startswith("tether1."), "site add prints only an enrollment token", token[:40])
    pending = hub.sites().get(SITE)
    h.check(pending is not None and pending.get("state") == "pending"
            and pending.get("online") is False, "a registered, not enrolled site is pending and "
            "offline", pending)

    site = h.site(SITE, hub)
    site.enroll(token)
    conf = open(site.conf_path).read()
    h.check(hub.pin in conf, "site.conf holds the hub pin")
    t_before = int(time.time())
    site.start({"web": svc.url})
    hub.proc.wait_log(r"\bsite_connected\b.*\bsite=%s\b" % SITE, 10)
    h.check(hub.proc.find(r"\bsite_connected\b.*\bremote=127\.0\.0\.1:\d+"),
            "hub log site_connected names the remote address")

    s = hub.wait_ready(SITE, 10)
    h.check(s is not None, "site list shows the site online")
    if s:
        h.check(s.get("state") == "active", "enrolled site is active", s.get("state"))
        h.check(re.match(r"^127\.0\.0\.1:\d+$", str(s.get("remote_addr"))),
                "remote_addr is the site's 127.0.0.1:port", s.get("remote_addr"))
        cs = s.get("connected_since")
        h.check(isinstance(cs, int) and t_before - 2 <= cs <= time.time() + 2,
                "connected_since is a unix time of this connection", cs)
        ls = s.get("last_seen")
        h.check(isinstance(ls, int) and ls >= t_before - 2, "last_seen is recent", ls)
        h.check(s.get("services") == ["web"], "services is [\"web\"]", s.get("services"))
        h.check(isinstance(s.get("agent_version"), str) and s.get("agent_version"),
                "agent_version is set", s.get("agent_version"))

    # ctl.conf alone (no --hub override) must be a working tetherctl config.
    r = hub.ctl("site", "list", "--json", use_hub=False)
    h.check(r.rc == 0 and SITE in r.stdout, "tetherctl with only --config ctl.conf works", r)
    r = hub.ctl("site", "list")
    h.check(r.rc == 0 and SITE in r.stdout, "site list (table) names the site", r)

    show = hub.site_show(SITE)
    sess = show.get("sessions") if isinstance(show, dict) else None
    h.check(isinstance(sess, list) and len(sess) >= 1 and not sess[0].get("disconnected_at"),
            "site show --json has an open session", sess)

    # The site uses the pinned hub key; the hub's key is what curl pins too.
    for proto in ("1.1", "2"):
        tag = "HTTP/%s" % proto
        r = hub.proxy(SITE, "web", "/healthz", http=proto)
        h.check(r.status == 200 and r.body.strip() == b"ok", "%s: GET /healthz through the "
                "tunnel" % tag, r)
        h.check(r.version == proto, "%s: curl spoke %s to the hub" % (tag, tag), r.version)
        h.check(r.headers.get("x-sample") == "yes", "%s: service response headers come back" % tag,
                r.headers)

        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            body = ("body for %s over %s" % (method, tag)).encode() if method != "GET" else None
            r = hub.proxy(SITE, "web", "/echo/a/b?x=1&y=two%20words&z=", http=proto,
                          method=method, data=body,
                          headers={"Cookie": "session=secret", "X-Custom": "kept-%s" % method,
                                   "Proxy-Authorization": "Basic Zm9vOmJhcg=="})
            j = r.json() or {}
            ok = h.check(r.status == 200 and j.get("method") == method,
                         "%s: %s /echo through the tunnel" % (tag, method), r)
            if not ok:
                continue
            h.check(j.get("path") == "/echo/a/b", "%s %s: path kept" % (tag, method), j.get("path"))
            h.check(j.get("query") == "x=1&y=two%20words&z=", "%s %s: query string kept as is"
                    % (tag, method), j.get("query"))
            hd = j.get("headers") or {}
            h.check("authorization" not in hd, "%s %s: Authorization not forwarded" % (tag, method),
                    hd.get("authorization"))
            h.check("cookie" not in hd, "%s %s: Cookie not forwarded" % (tag, method),
                    hd.get("cookie"))
            h.check("proxy-authorization" not in hd, "%s %s: Proxy-Authorization not forwarded"
                    % (tag, method))
            h.check(hd.get("x-tether-user"), "%s %s: X-Tether-User added" % (tag, method), hd)
            h.check(hd.get("x-custom") == "kept-%s" % method, "%s %s: other headers forwarded"
                    % (tag, method), hd.get("x-custom"))
            if method == "GET":
                h.check(j.get("body_length") == 0, "%s GET: no body" % tag, j.get("body_length"))
            else:
                h.check(j.get("body_length") == len(body), "%s %s: body forwarded (%d bytes)"
                        % (tag, method, len(body)), j.get("body_length"))
        r = hub.proxy(SITE, "web", "/echo", http=proto)
        xff = ((r.json() or {}).get("headers") or {}).get("x-forwarded-for", "")
        h.check("127.0.0.1" in xff, "%s: X-Forwarded-For names the user" % tag, xff)

        r = hub.proxy(SITE, "web", "/status/418", http=proto)
        h.check(r.status == 418, "%s: the service's status passes through" % tag, r)
        r = hub.proxy(SITE, "web", "/sha256", http=proto, method="POST", data=b"abc")
        h.check((r.json() or {}).get("sha256") ==
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "%s: POST body arrives intact" % tag, r)
        r = hub.proxy(SITE, "web", "/count", http=proto)
        h.check((r.json() or {}) == {"site": SITE, "count": 1287},
                "%s: /count answers for this site" % tag, r)

    # The user's token never reaches the site: the service log shows no token.
    h.check(hub.token not in svc.proc.text() and hub.token not in site.proc.text(),
            "the admin token appears in neither the site's nor the service's log")
    h.check(site.proc.alive() and hub.proc.alive(), "hub and site still running")

    # A site asked to stop says so as information, not as a warning.
    mark = site.proc.mark()
    site.proc.signal(signal.SIGTERM)
    m = site.proc.wait_log(r"\b(\w+) disconnected hub=", 10, since=mark, fatal=False)
    h.check(m is not None and m.group(1) == "info",
            "a normal stop of the site logs 'disconnected' at info", m and m.group(0))
    h.wait_until(lambda: not site.proc.alive(), 15)
    h.check(site.proc.returncode() == 0, "the site exits 0 on SIGTERM", site.proc.returncode())


if __name__ == "__main__":
    Harness.main("tunnel_basic", main)

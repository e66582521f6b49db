#!/usr/bin/env python3
# Integration: site.conf services reloaded on SIGHUP and announced to the hub without cutting the tunnel or a running request.
# SPDX-License-Identifier: MIT
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal  # noqa: E402

A = "reload-a"
SLOW_MS = 5000


def set_services(site, lines):
    """Rewrites site.conf: every service/service_opt line replaced by lines."""
    with open(site.conf_path) as f:
        keep = [l for l in f.read().splitlines()
                if l.split("=", 1)[0].strip() not in ("service", "service_opt")]
    with open(site.conf_path, "w") as f:
        f.write("\n".join(keep + lines) + "\n")


def svc_state(hub):
    s = hub.site_show(A)
    return sorted(s.get("services") or []), s.get("restricted")


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    svc = h.service("svc-" + A, site_name=A)
    tok = hub.site_add(A)
    site = h.site(A, hub)
    site.enroll(tok)
    # From the file: old and keep; from the command line: web (stays).
    set_services(site, ["service = old=%s" % svc.url, "service = keep=%s" % svc.url])
    site.start({"web": svc.url})
    if h.wait_until(lambda: svc_state(hub) == (["keep", "old", "web"], []), 15) is None:
        raise Fatal("site %s not online with keep, old, web" % A)
    plain = hub.token_create("plain", "--role", "user", "--sites", A)
    sess0 = hub.site_show(A).get("sessions", [{}])[0]
    hub_mark, site_mark = hub.proc.mark(), site.proc.mark()

    # One keep-alive connection used before and after the reload.
    conn = hub.keepalive()
    hdr = {"Authorization": "Bearer " + plain}

    def on_conn(svc_name):
        conn.request("GET", "/v1/sites/%s/services/%s/healthz" % (A, svc_name), headers=hdr)
        resp = conn.getresponse()
        resp.read()
        return resp.status

    before = [on_conn("keep"), on_conn("old")]
    sock = conn.sock

    # A long request to a service the reload removes: it must end intact.
    slow = {}

    def run_slow():
        slow["r"] = hub.proxy(A, "old", "/slow?ms=%d" % SLOW_MS, timeout=60)
        slow["t"] = time.monotonic()

    th = threading.Thread(target=run_slow)
    th.start()
    # inflight counts the /stats request itself; /slow is then in by_route.
    if not h.wait_until(lambda: ((svc.stats() or {}).get("inflight", 0) >= 2
                                 and (svc.stats() or {}).get("by_route", {}).get("/slow")), 10):
        raise Fatal("the slow request did not reach the service")

    # The new set: old gone, keep restricted, new added.
    set_services(site, ["service = keep=%s" % svc.url, "service_opt = keep:restricted",
                        "service = new=%s" % svc.url])
    site.proc.signal(signal.SIGHUP)
    want = (["keep", "new", "web"], ["keep"])
    got = h.wait_until(lambda: svc_state(hub) == want, 15, 0.05)
    seen_at = time.monotonic()
    h.check(got, "after SIGHUP, site show lists the new set (keep restricted, new, web)",
            svc_state(hub))
    h.check(th.is_alive(), "the change showed while the slow request was still running")
    r = hub.ctl("site", "show", A)
    h.check(r.rc == 0 and any(l.split() == ["restricted:", "keep"] for l in r.stdout.splitlines())
            and any(l.split()[:1] == ["services:"] and "new" in l for l in r.stdout.splitlines()),
            "tetherctl site show prints the new services and the restricted one", r)

    after = [on_conn("keep"), on_conn("old"), on_conn("new")]
    h.check(before == [200, 200] and after == [403, 404, 200] and conn.sock is sock,
            "same keep-alive connection: keep 200 -> 403 (now restricted), old 200 -> 404 "
            "(gone), new 200", (before, after))
    conn.close()
    h.check(hub.proxy(A, "keep", "/healthz").status == 200,
            "an admin token still reaches the restricted keep")

    th.join(60)
    r = slow.get("r")
    h.check(r is not None and r.status == 200 and (r.json() or {}).get("ms") == SLOW_MS
            and slow["t"] > seen_at,
            "the request to the removed service, started before the reload, completed intact "
            "after it", r)

    h.check(site.proc.find(r"\bservices_reloaded\b.*changed=yes", since=site_mark),
            "the site logs the reload")
    h.check(hub.proc.find(r"\bsite_services_changed site=%s\b" % A, since=hub_mark),
            "the hub logs the change")
    h.check(not hub.proc.find(r"\bsite_(dis)?connected\b", since=hub_mark)
            and not site.proc.find(r"\bconnected hub=|\bdisconnected\b", since=site_mark),
            "no disconnect and no reconnect in between (hub and site logs)")
    sess1 = hub.site_show(A).get("sessions", [{}])[0]
    h.check(sess1.get("live") and sess1.get("connected_at") == sess0.get("connected_at")
            and len(hub.site_show(A).get("sessions", [])) == 1,
            "the tunnel's session is the same one", (sess0, sess1))

    # A bad new set is refused whole; the old one stays, here and at the hub.
    for bad in (["service = keep=%s" % svc.url, "service = x=ftp://127.0.0.1:21"],
                ["service = keep=%s" % svc.url, "service_opt = nosuch:restricted"],
                ["service = keep=%s" % svc.url, "service = keep=%s" % svc.url]):
        m = site.proc.mark()
        set_services(site, bad)
        site.proc.signal(signal.SIGHUP)
        h.check(site.proc.wait_log(r"\bservices_reload_refused\b.*kept=3", 10, since=m,
                                   fatal=False),
                "a bad set is refused with a log line: %s" % bad[-1])
        h.check(svc_state(hub) == want, "the hub still shows the old set", svc_state(hub))
        h.check(hub.proxy(A, "new", "/healthz").status == 200, "and the old set still serves")
    # The same set again: nothing to announce.
    m, hm = site.proc.mark(), hub.proc.mark()
    set_services(site, ["service = keep=%s" % svc.url, "service_opt = keep:restricted",
                        "service = new=%s" % svc.url])
    site.proc.signal(signal.SIGHUP)
    h.check(site.proc.wait_log(r"\bservices_reloaded\b.*changed=no", 10, since=m, fatal=False),
            "reloading an unchanged set is logged as unchanged")
    h.check(not hub.proc.find(r"\bsite_services_changed\b", since=hm),
            "and is not announced")


Harness.main("service_reload", main, tools=("curl",))

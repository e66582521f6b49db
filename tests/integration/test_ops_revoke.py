#!/usr/bin/env python3
# Integration: revoke and disable cut a live tunnel within 1 s and the site is refused in TLS; enable brings it back within its backoff; history and audit.
# SPDX-License-Identifier: MIT
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal  # noqa: E402

SITE = "ops-rv"
REFUSED = r"the hub refused this site's key during the TLS handshake"


def audit_rows(hub, action, target):
    rows = hub.ctl_json("audit", "--limit", "500").get("entries", [])
    return [e for e in rows if e.get("action") == action and e.get("target") == target]


def start_download(h, hub, out):
    """A long proxied download (2 MB/s for 100 s) as a background curl."""
    url = hub.url + "/v1/sites/%s/services/web/bytes/200000000?rate=2000000" % SITE
    argv = ["curl", "-q", "-sS", "-k", "--http1.1", "--pinnedpubkey", hub.pin, "-H",
            "Authorization: Bearer %s" % hub.token, "-o", out, "-w", "\nstatus=%{http_code}\n",
            url]
    return h.spawn("download", argv)


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def main(h):
    hub, site, svc = h.setup(SITE, hub_args=["--ping-interval", "1"],
                             site_args=["--ping-interval", "1"])

    # --- revoke during a long download ---------------------------------------
    out = h.path("download.bin")
    dl = start_download(h, hub, out)
    if not h.wait_until(lambda: file_size(out) > 1000000, 15):
        raise Fatal("the download did not start: %r" % dl.text())
    hub_mark, site_mark = hub.proc.mark(), site.proc.mark()
    r = hub.ctl("site", "revoke", SITE)
    t_revoked = time.monotonic()
    h.check(r.rc == 0 and "revoked" in r.stdout, "tetherctl site revoke", r)
    h.wait_until(lambda: not dl.alive(), 5, interval=0.02)
    t_cut = time.monotonic() - t_revoked
    got = file_size(out)
    h.info("download ended %.3f s after the revoke answer, %d bytes in" % (t_cut, got))
    h.check(not dl.alive() and t_cut <= 1.0, "the running download ends within 1 s of the revoke",
            "%.3f s" % t_cut)
    h.check(got < 200000000, "the download did not complete", got)
    m = hub.proc.wait_log(r"\bsite_disconnected\b.*\bsite=%s\b.*reason=\"?site revoked by operator"
                          % SITE, 1.0, since=hub_mark, fatal=False)
    h.check(m, "hub logs site_disconnected (site revoked by operator) within 1 s")
    m = site.proc.wait_log(r"\bdisconnected hub=", 1.0, since=site_mark, fatal=False)
    h.check(m, "the site sees the tunnel drop within 1 s")
    m = hub.proc.wait_log(r"\btunnel_refused\b", 10, since=hub_mark, fatal=False)
    h.check(m, "the site's reconnect is refused during the TLS handshake (tunnel_refused)")
    h.check(not hub.proc.find(r"\bsite_connected\b", since=hub_mark),
            "the revoked site never gets a tunnel again")
    m = site.proc.wait_log(REFUSED, 10, since=site_mark, fatal=False)
    h.check(m, "the site's log says in plain words that the hub refused its key")
    s = hub.site_show(SITE)
    h.check(s.get("state") == "revoked" and s.get("pin") is None and not s.get("online"),
            "site show: revoked, no key, offline", s)
    sess = s.get("sessions") or [{}]
    h.check(sess[0].get("reason") == "site revoked by operator" and sess[0].get("disconnected_at"),
            "the session ended with reason 'site revoked by operator'", sess[0])
    h.check(sess[0].get("bytes_in", 0) >= got,
            "the session's bytes_in (%s) covers the %d bytes downloaded" % (
                sess[0].get("bytes_in"), got))
    h.check(sess[0].get("bytes_out", 0) > 0 and sess[0].get("duration_s", -1) >= 0,
            "bytes_out and duration recorded", sess[0])
    rows = audit_rows(hub, "site.revoke", SITE)
    h.check(len(rows) == 1 and rows[0].get("result") == "ok" and rows[0].get("actor") == "admin"
            and rows[0].get("remote") and rows[0].get("ts"),
            "one audit row for the revoke (who, from where, result)", rows)
    r = hub.ctl("site", "enable", SITE)
    h.check(r.rc == 5, "enabling a revoked site is a conflict (exit 5): it has no key", r)
    show = hub.ctl("site", "show", SITE)
    h.check(show.rc == 0 and "site revoked by operator" in show.stdout and
            re.search(r"\bBYTES-IN\b", show.stdout), "tetherctl site show prints the history", show)
    site.proc.stop()

    # --- back with a new enrollment token -------------------------------------
    tok = hub.ctl("site", "token", SITE).stdout.strip()
    h.check(tok.startswith("tether1."), "site token issues a new enrollment token", tok[:20])
    site2 = h.site(SITE, hub, dirname="site-%s-2" % SITE)
    site2.enroll(tok)
    site2.start({"web": svc.url}, ["--ping-interval", "1"])
    h.check(hub.wait_ready(SITE, 10), "re-enrolled site is online again")
    h.check(hub.proxy(SITE, "web", "/healthz").status == 200, "and serves")

    # --- disable, then enable -------------------------------------------------
    hub_mark, site_mark = hub.proc.mark(), site2.proc.mark()
    r = hub.ctl("site", "disable", SITE)
    t_dis = time.monotonic()
    h.check(r.rc == 0, "tetherctl site disable", r)
    m = site2.proc.wait_log(r"\bdisconnected hub=", 1.0, since=site_mark, fatal=False)
    h.check(m, "disable cuts the tunnel within 1 s (%.2f s)" % (time.monotonic() - t_dis))
    h.check(hub.proc.wait_log(r"\btunnel_refused\b", 10, since=hub_mark, fatal=False),
            "the disabled site is refused during the TLS handshake")
    h.check(site2.proc.wait_log(REFUSED, 10, since=site_mark, fatal=False),
            "the disabled site's log says why")
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 503, "a disabled site is offline for users", r)
    time.sleep(2.0)  # a few refused attempts: the backoff grows
    s = hub.site_show(SITE)
    h.check(s.get("state") == "disabled" and s.get("pin"), "disabled keeps the key", s)
    mark2 = site2.proc.mark()
    hub_mark = hub.proc.mark()
    r = hub.ctl("site", "enable", SITE)
    t_en = time.monotonic()
    h.check(r.rc == 0, "tetherctl site enable", r)
    m = site2.proc.wait_log(r"\breconnect_in ms=\d+", 30, since=site_mark, fatal=False)
    delays = [int(x) for x in re.findall(r"\breconnect_in ms=(\d+)",
                                         site2.proc.text(site_mark)[:len(
                                             site2.proc.text(site_mark)) - len(
                                             site2.proc.text(mark2))])]
    pending = delays[-1] / 1000.0 if delays else 30.0
    m = hub.proc.wait_log(r"\bsite_connected\b.*\bsite=%s\b" % SITE, pending + 5, since=hub_mark,
                          fatal=False)
    t_back = time.monotonic() - t_en
    h.info("back %.2f s after enable; the backoff pending at enable was %.2f s" % (t_back, pending))
    h.check(m and t_back <= pending + 1.0, "after enable the site is back within its backoff",
            "%.2f s > %.2f s + 1" % (t_back, pending))
    h.check(hub.wait_ready(SITE, 5), "online with services after enable")
    h.check(hub.proxy(SITE, "web", "/healthz").status == 200, "serves after enable")
    for action in ("site.disable", "site.enable"):
        rows = audit_rows(hub, action, SITE)
        h.check(len(rows) >= 1 and rows[0].get("result") == "ok", "audit row for %s" % action,
                rows)
    sess = hub.site_show(SITE).get("sessions") or []
    h.check(len(sess) >= 2 and sess[0].get("live") and sess[0].get("disconnected_at") is None
            and sess[1].get("reason") == "site disabled by operator",
            "history: the live session, then the one the disable ended", sess[:2])

    # --- remove ---------------------------------------------------------------
    site_mark = site2.proc.mark()
    r = hub.ctl("site", "remove", SITE)
    h.check(r.rc == 0, "tetherctl site remove", r)
    h.check(site2.proc.wait_log(r"\bdisconnected hub=", 1.0, since=site_mark, fatal=False),
            "remove cuts the tunnel within 1 s")
    r = hub.ctl("site", "show", SITE)
    h.check(r.rc == 3, "the removed site is gone (exit 3)", r)
    h.check(audit_rows(hub, "site.remove", SITE), "audit row for the remove")
    h.check(len(audit_rows(hub, "site.revoke", SITE)) == 1,
            "audit rows outlive the site they name")
    site2.proc.stop()


Harness.main("test_ops_revoke", main)

#!/usr/bin/env python3
# Integration: two hubs on one PostgreSQL database: a revoke, a disable, a token revoke and a label change made through hub A reach hub B within 1 s (LISTEN/NOTIFY), also after the server restarted; a change missed while B's listener was away is caught when it comes back.
# SPDX-License-Identifier: MIT
import datetime
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, _pdeathsig, edit_conf  # noqa: E402

# The bound: a change through one hub cuts a tunnel held by another
# within 1 s.
CUT_S = 1.0
TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z?")


class Watch:
    """tetherctl site watch against one hub, its stdout lines kept."""

    def __init__(self, h, hub):
        argv = [h.bin("tetherctl"), "--config", hub.ctl_conf, "--hub", hub.url, "site", "watch"]
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env=h.env, preexec_fn=_pdeathsig)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        h.at_cleanup(self.stop)

    def _read(self):
        for raw in self.p.stdout:
            self.lines.append(raw.decode("utf-8", "replace").split())

    def seen(self, site, event, since=0):
        """(site, event) among the lines from index since (DATE TIME SITE EVENT STATE)."""
        return any(len(f) == 5 and f[2] == site and f[3] == event for f in self.lines[since:])

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def log_ts(line):
    """The wall-clock time a hub log line carries (seconds), or None."""
    m = TS_RE.match(line or "")
    if not m:
        return None
    return datetime.datetime.fromisoformat(m.group(1)).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def line_of(m):
    """The whole log line a match of Proc.find is in."""
    if m is None:
        return None
    start = m.string.rfind("\n", 0, m.start()) + 1
    end = m.string.find("\n", m.end())
    return m.string[start:end if end >= 0 else len(m.string)]


def site_on(h, a, b, name):
    """Site name, enrolled through hub a, running against hub b only."""
    svc = h.service("svc-" + name, site_name=name)
    site = h.site(name, a)
    site.enroll(a.site_add(name))
    edit_conf(site.conf_path, "hub", b.addr)
    site.start({"web": svc.url})
    if b.wait_ready(name, 15) is None:
        h.check(False, "site %s online on hub B" % name)
    return site


def cut_across(h, a, b, site, verb, reason, lat):
    """tetherctl site VERB on hub a; the site's tunnel on hub b must go within
    CUT_S of a's answer. Returns b's mark from before the change."""
    b_mark, s_mark = b.proc.mark(), site.proc.mark()
    a_mark = a.proc.mark()
    t0 = time.monotonic()
    r = a.ctl("site", verb, site.name)
    t_answer = time.monotonic()
    h.check(r.rc == 0, "tetherctl site %s %s on hub A" % (verb, site.name), r)
    pat = r"\bsite_disconnected\b.*\bsite=%s\b.*reason=\"?%s" % (site.name, reason)
    m = b.proc.wait_log(pat, CUT_S + 1.0, since=b_mark, fatal=False)
    t_seen = time.monotonic()
    done = a.proc.find(r"\bsite_%s\b.*\bsite=%s\b" % ("disabled" if verb == "disable" else
                                                       "revoked", site.name), since=a_mark)
    # The hubs' own clocks (one machine): A's line is logged just before its
    # answer, B's when the tunnel closed.
    t_a, t_b = log_ts(line_of(done)), log_ts(line_of(m))
    if t_a is not None and t_b is not None:
        dt = t_b - t_a
    else:  # no timestamps: from the request's start (an upper bound)
        dt = t_seen - t0
    lat.append(dt)
    h.info("%s on A -> cut on B: %.3f s (tetherctl took %.3f s)" % (verb, dt, t_answer - t0))
    h.check(m is not None and dt <= CUT_S,
            "a %s through hub A cuts the site's tunnel on hub B within %.1f s (reason %r)"
            % (verb, CUT_S, reason), "%.3f s" % dt)
    h.check(site.proc.wait_log(r"\bdisconnected hub=", CUT_S, since=s_mark, fatal=False),
            "the site sees its tunnel to hub B drop")
    h.check(b.proc.wait_log(r"\btunnel_refused\b", 10, since=b_mark, fatal=False),
            "the site's next handshake to hub B is refused (tunnel_refused)")
    h.check(not b.proc.find(r"\bsite_connected\b.*\bsite=%s\b" % site.name, since=b_mark),
            "and it did not connect again")
    return b_mark


def main(h):
    h.pg_only("several hubs share one PostgreSQL database")
    # A server of the test's own: it is stopped and started again.
    fx, pgdir = h.pg_private()

    a = h.hub("hub-a")
    a.init()
    a.start()
    b = h.hub("hub-b")
    b.init(db=a.db_url)  # joins A's cluster
    b.start()
    for hub in (a, b):
        h.check(hub.proc.wait_log(r"\bcluster_listening\b", 5, fatal=False),
                "%s listens to the registry's changes" % hub.name)
    watch = Watch(h, b)
    lat = []

    s1 = site_on(h, a, b, "s1")
    s2 = site_on(h, a, b, "s2")
    h.check(b.proxy("s1", "web", "/healthz").status == 200, "hub B serves site s1")
    h.check(a.proc.find(r"\bsite_connected\b") is None, "no site is connected to hub A")
    h.check(h.wait_until(lambda: watch.seen("s2", "online"), 5, 0.05),
            "the watch on hub B is listening (it saw s2 come online)")

    # --- a token revoked on A is refused by B at once --------------------------
    tok = a.token_create("u1", "--role", "user", "--sites", "s2")
    r = b.proxy("s2", "web", "/healthz", token=tok)
    h.check(r.status == 200, "hub B serves a user token created on hub A (and caches it)", r)
    r = b.proxy("s2", "web", "/healthz", token=tok)
    h.check(r.status == 200, "twice", r)
    r = a.ctl("token", "revoke", "u1")
    h.check(r.rc == 0, "tetherctl token revoke u1 on hub A", r)
    r = b.proxy("s2", "web", "/healthz", token=tok)
    h.check(r.status == 401, "hub B refuses the token revoked on hub A at once, though it had "
            "served it from its cache just before", r)

    # --- a label change on A shows in B's watch ---------------------------------
    since = len(watch.lines)
    r = a.ctl("site", "label", "s2", "team=x")
    h.check(r.rc == 0, "tetherctl site label s2 on hub A", r)
    h.check(h.wait_until(lambda: watch.seen("s2", "changed", since), 2, 0.05),
            "tetherctl site watch against hub B shows the label change made on hub A",
            watch.lines[since:])
    since = len(watch.lines)
    a.site_add("s9")
    h.check(h.wait_until(lambda: watch.seen("s9", "changed", since), 2, 0.05),
            "and a site added on hub A", watch.lines[since:])

    # --- revoke and disable on A cut tunnels held by B ---------------------------
    cut_across(h, a, b, s1, "revoke", "site revoked by operator", lat)
    cut_across(h, a, b, s2, "disable", "site disabled by operator", lat)
    b_mark, a_mark = b.proc.mark(), a.proc.mark()
    r = a.ctl("site", "enable", "s2")
    h.check(r.rc == 0, "tetherctl site enable s2 on hub A", r)
    # The site knows both hubs (B's hello listed A): it comes back on either.
    back = h.wait_until(lambda: any(hub.proc.find(r"\bsite_connected\b.*\bsite=s2\b", since=m)
                                    for hub, m in ((a, a_mark), (b, b_mark))), 15, 0.1)
    h.check(back, "re-enabled on hub A, site s2 is let back in")

    # --- the server restarts; the listener comes back ------------------------------
    s3 = site_on(h, a, b, "s3")
    # A token hub B served (and keeps for an outage) is revoked through A
    # just before the server stops: B must not serve it from memory then.
    tok2 = a.token_create("u2", "--role", "user", "--sites", "s3")
    r = b.proxy("s3", "web", "/healthz", token=tok2)
    h.check(r.status == 200, "hub B serves a second token created on hub A", r)
    r = a.ctl("token", "revoke", "u2")
    h.check(r.rc == 0, "tetherctl token revoke u2 on hub A", r)
    b_mark = b.proc.mark()
    t_down = time.monotonic()
    fx.down(pgdir)
    h.check(b.proc.wait_log(r"\bcluster_listen_lost\b", 5, since=b_mark, fatal=False),
            "hub B notices that its listening connection is lost")
    r = b.proxy("s3", "web", "/healthz", token=tok2)
    h.check(r.status == 503, "while the database is down, hub B does not serve the token "
            "revoked on hub A from the row it kept for an outage (503)", r)
    fx.up(pgdir)
    h.info("PostgreSQL restarted in %.1f s" % (time.monotonic() - t_down))
    h.check(b.proc.wait_log(r"\bcluster_listen_resumed\b.*\btunnels=[1-9]", 10, since=b_mark,
                            fatal=False),
            "hub B listens again after the restart and re-checks its tunnels")
    cut_across(h, a, b, s3, "revoke", "site revoked by operator", lat)

    # --- a change no hub heard of is caught when the listener comes back -------
    # The listening connections are ended and, in the same breath, a site is
    # revoked behind the hubs' backs (plain SQL: no notification at all). The
    # re-check after the reconnect must find it.
    s4 = site_on(h, a, b, "s4")
    s5 = site_on(h, a, b, "s5")
    b_mark = b.proc.mark()
    h.pg_rows(a.db_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              "WHERE datname = current_database() AND query LIKE 'LISTEN%%'; "
              "UPDATE sites SET state = 'revoked', pin = NULL WHERE name = '%s'; "
              "UPDATE sites SET pin = 'sha256//%s=' WHERE name = '%s'"
              % (s4.name, "A" * 43, s5.name))
    m = b.proc.wait_log(r"\bsite_disconnected\b.*\bsite=s4\b.*reason=\"?site revoked by operator",
                        5, since=b_mark, fatal=False)
    h.check(m, "a revoke hub B never heard of cuts its tunnel once B listens again")
    m = b.proc.wait_log(r"\bsite_disconnected\b.*\bsite=s5\b.*reason=\"?the site's key changed",
                        5, since=b_mark, fatal=False)
    h.check(m, "so does a key changed behind its back (the tunnel's key is no longer the site's)")
    h.check(b.proc.find(r"\bcluster_listen_resumed\b.*\bcut=2\b", since=b_mark),
            "hub B's log says its re-check cut two tunnels")
    h.info("cut latency across hubs: %s s" % ", ".join("%.3f" % x for x in lat))
    h.check(b.proc.alive() and a.proc.alive(), "both hubs ran throughout")


if __name__ == "__main__":
    Harness.main("test_cluster_revoke", main, tools=("curl", "psql"))

#!/usr/bin/env python3
# Integration: a site that connects again while its old tunnel still looks alive replaces the old session.
# SPDX-License-Identifier: MIT
import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Site, tls_connect  # noqa: E402

SITE = "replace-a"


def main(h):
    # A long ping interval: the hub must not notice the frozen agent by itself.
    hub, site, svc = h.setup(SITE, hub_args=["--ping-interval", "60"],
                             site_args=["--ping-interval", "60"])
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "site serves through its first tunnel", r)
    first = hub.site_show(SITE)["sessions"][0]

    # Freeze the first agent: its TCP connection stays open and silent.
    site.proc.signal(signal.SIGSTOP)
    hub_mark = hub.proc.mark()
    second = Site.__new__(Site)
    # The same site (same key) from a copy of its state: one agent per state
    # directory (the state lock), so a second host of the site, not a second
    # agent on the first one's directory.
    copy = h.mkdir("site-copy")
    for f in os.listdir(site.dir):
        if f != "lock":
            shutil.copy2(os.path.join(site.dir, f), copy)
    second.h, second.name, second.hub, second.dir, second.proc = h, SITE, hub, copy, None
    second.start({"web": svc.url}, extra=["--ping-interval", "60"])
    m = hub.proc.wait_log(r"site_disconnected site=%s .*reason=\"?replaced by a newer connection"
                          % SITE, 10, since=hub_mark, fatal=False)
    h.check(m, "hub logs the old tunnel replaced by the newer connection")
    r = hub.proxy(SITE, "web", "/echo?via=second")
    h.check(r.status == 200 and (r.json() or {}).get("query") == "via=second",
            "requests go through the new tunnel while the old agent is frozen", r)
    sess = hub.site_show(SITE)["sessions"]
    old = [s for s in sess if s.get("connected_at") == first.get("connected_at")
           and s.get("remote_addr") == first.get("remote_addr")]
    h.check(len(old) == 1 and (old[0].get("reason") or "").startswith("replaced"),
            "the old session row is closed with reason 'replaced...'", sess)
    h.check(not sess[0].get("disconnected_at"), "the newest session is open", sess[0])
    online = [s for s in hub.sites().values() if s.get("online")]
    h.check(len(online) == 1, "the site is listed once, online", online)
    site.proc.signal(signal.SIGKILL)
    site.proc.signal(signal.SIGCONT)
    site.proc.p.wait(10)  # reaped before the harness checks the daemons still running

    # A connection with the site's key that never answers the hello (as
    # tether-site doctor's credential check, or a stray client) does not cut
    # the working tunnel: it waits on standby and dies alone.
    live = hub.site_show(SITE)["sessions"][0]
    mark = hub.proc.mark()
    s = tls_connect(hub.port, alpn=("tether/1",), cert=os.path.join(site.dir, "site.crt"),
                    key=os.path.join(site.dir, "site.key"), timeout=10)
    h.check(hub.proc.wait_log(r"\bsite_connected\b.*\bsite=%s\b" % SITE, 5, since=mark,
                              fatal=False), "the hub accepts the probe's handshake")
    r = hub.proxy(SITE, "web", "/echo?via=live")
    h.check(r.status == 200 and (r.json() or {}).get("query") == "via=live",
            "requests still go through the working tunnel while the probe is connected", r)
    s.close()
    m = hub.proc.wait_log(r"\bsite_disconnected\b.*\bsite=%s\b.*" % SITE, 5, since=mark,
                          fatal=False)
    h.check(m and "replaced" not in m.group(0), "only the probe's session ends",
            m and m.group(0))

    def probe_closed():
        ss = hub.site_show(SITE)["sessions"]
        done = [x for x in ss if x.get("connected_at", 0) >= live.get("connected_at", 0)
                and x.get("remote_addr") != live.get("remote_addr") and x.get("disconnected_at")]
        return ss if done else None
    sess = h.wait_until(probe_closed, 10)
    h.check(sess, "the probe's session row is closed")
    sess = sess or hub.site_show(SITE)["sessions"]
    same = [x for x in sess if x.get("connected_at") == live.get("connected_at")
            and x.get("remote_addr") == live.get("remote_addr")]
    h.check(len(same) == 1 and not same[0].get("disconnected_at"),
            "the working session stays open", sess[:3])
    h.check(hub.proxy(SITE, "web", "/healthz").status == 200, "and the site still serves")

    # tether-site doctor against the running site changes nothing either.
    mark = hub.proc.mark()
    r = h.run([h.bin("tether-site"), "doctor", "--state", site.dir], timeout=60)
    h.check(r.rc == 0, "tether-site doctor passes against the running site", r)
    # The hub is done with doctor's connection once it logs its end.
    m = hub.proc.wait_log(r"\bsite_disconnected\b.*\bsite=%s\b.*" % SITE, 10, since=mark,
                          fatal=False)
    h.check(m, "the hub logs the end of doctor's connection", m and m.group(0))
    h.check(not hub.proc.find(r"replaced by a newer connection", since=mark),
            "doctor did not replace the working tunnel")
    h.check(second.proc.alive() and hub.proxy(SITE, "web", "/healthz").status == 200,
            "the agent is up and serving after doctor")


if __name__ == "__main__":
    Harness.main("replace", main)

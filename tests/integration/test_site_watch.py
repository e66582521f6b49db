#!/usr/bin/env python3
# Integration: tetherctl site watch prints one line per site change (added, enrolled, online, offline, disabled, enabled, revoked, removed) as it happens, scoped by the token, as JSON with --json, across a hub restart, until SIGINT.
# SPDX-License-Identifier: MIT
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, _pdeathsig  # noqa: E402


class Watch:
    """tetherctl site watch in the background; stdout and stderr lines kept
    apart, each with the time it arrived."""

    def __init__(self, h, hub, *args, token=None):
        argv = [h.bin("tetherctl"), "--config", hub.ctl_conf, "--hub", hub.url]
        if token:
            argv += ["--token", token]
        argv += ["site", "watch"] + list(args)
        h.note("start watch: %s" % " ".join(argv))
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=h.env, preexec_fn=_pdeathsig)
        self.out, self.err = [], []
        self.threads = [threading.Thread(target=self._read, args=(f, lst), daemon=True)
                        for f, lst in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(f, lst):
        for raw in f:
            lst.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))

    def lines(self):
        return [ln for _, ln in self.out]

    def events(self):
        """[(site, event, state)] from the text lines (DATE TIME SITE EVENT STATE)."""
        out = []
        for ln in self.lines():
            f = ln.split()
            if len(f) == 5:
                out.append(tuple(f[2:]))
        return out

    def wait_for(self, h, want, timeout=20):
        """Waits until (site, event, state) is among the events; returns it."""
        return h.wait_until(lambda: want in self.events(), timeout, 0.05)

    def stop(self, sig=signal.SIGINT, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        for t in self.threads:
            t.join(5)
        return rc


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    svc = h.service("svc")
    hub.site_add("probe")
    other = hub.token_create("other", "--role", "user", "--sites", "probe")

    w = Watch(h, hub)
    wj = Watch(h, hub, "--json")
    wo = Watch(h, hub, token=other)
    # Until each watcher shows a change of "probe", it may not be listening yet.
    n = 0

    def all_see_probe():
        nonlocal n
        n += 1
        hub.ctl("site", "label", "probe", "n=%d" % n)
        time.sleep(0.2)
        return all(any(e[0] == "probe" for e in x.events()) for x in (w, wo)) and \
            any('"probe"' in ln for ln in wj.lines())

    h.check(h.wait_until(all_see_probe, 20, 0.3), "the watchers are listening (a label change "
            "of 'probe' reaches all three)", (w.out, wo.out, wj.out, w.err))
    t0 = time.monotonic()
    hub.site_add("s1")
    h.check(w.wait_for(h, ("s1", "changed", "pending")), "site add: 's1 changed pending'",
            w.lines())
    h.check(time.monotonic() - t0 < 5, "... as it happens", time.monotonic() - t0)
    site = h.site("s1", hub)
    site.enroll(hub.ctl("site", "token", "s1").stdout.strip())
    h.check(w.wait_for(h, ("s1", "changed", "active")), "enrolled: 's1 changed active'",
            w.lines())
    site.start({"web": svc.url})
    h.check(w.wait_for(h, ("s1", "online", "active")), "the site connects: 's1 online active'",
            w.lines())
    site.proc.stop()
    h.check(w.wait_for(h, ("s1", "offline", "active")), "the site goes away: 's1 offline active'",
            w.lines())
    site.start({"web": svc.url})
    h.check(h.wait_until(lambda: w.events().count(("s1", "online", "active")) == 2, 20, 0.05),
            "it comes back: a second 's1 online active'", w.lines())
    hub.ctl("site", "disable", "s1")
    h.check(w.wait_for(h, ("s1", "changed", "disabled")) and
            w.wait_for(h, ("s1", "offline", "disabled")),
            "disabled: 's1 changed disabled' and 's1 offline disabled'", w.lines())
    hub.ctl("site", "enable", "s1")
    h.check(w.wait_for(h, ("s1", "changed", "active")) and
            h.wait_until(lambda: w.events().count(("s1", "online", "active")) == 3, 40, 0.1),
            "enabled: it is back online", w.lines())
    hub.ctl("site", "revoke", "s1")
    h.check(w.wait_for(h, ("s1", "changed", "revoked")) and
            w.wait_for(h, ("s1", "offline", "revoked")),
            "revoked: 's1 changed revoked' and 's1 offline revoked'", w.lines())
    r = hub.ctl("site", "remove", "s1")
    h.check(r.rc == 0, "site remove s1 succeeds", r)
    h.check(w.wait_for(h, ("s1", "changed", "removed")), "removed: 's1 changed removed'",
            w.lines())
    s1 = [e for e in w.events() if e[0] == "s1"]
    # add, site token (a new enrollment token), enroll, online, offline.
    h.check(s1[:5] == [("s1", "changed", "pending"), ("s1", "changed", "pending"),
                       ("s1", "changed", "active"), ("s1", "online", "active"),
                       ("s1", "offline", "active")],
            "one line per change, in the order they happened", s1)
    h.check(all(len(ln.split()) == 5 and ln[:4].isdigit() for ln in w.lines()),
            "every line is DATE TIME SITE EVENT STATE", w.lines())

    # The scoped token saw only its own site; --json is one object per line.
    h.check(not any(e[0] == "s1" for e in wo.events()) and wo.events(),
            "a token scoped to 'probe' sees probe's changes and none of s1's", wo.out)
    objs = [json.loads(ln) for ln in wj.lines()]
    h.check(all(set(o) == {"ts", "site", "event", "state"} for o in objs) and
            {"site": "s1", "event": "changed", "state": "revoked"} in
            [{k: o[k] for k in ("site", "event", "state")} for o in objs],
            "--json: one object per line (ts, site, event, state)", wj.lines())

    # The hub restarts: the watch says so on stderr, keeps trying, and goes
    # on once the hub is back.
    hub.proc.stop()
    h.check(h.wait_until(lambda: any("lost the hub's event stream" in ln for _, ln in w.err),
                         20, 0.1), "a lost hub is said on stderr", w.err)
    h.check(w.p.poll() is None, "the watch keeps running while the hub is down")
    hub.start()
    h.check(h.wait_until(lambda: any("watching again" in ln for _, ln in w.err), 30, 0.1),
            "it reconnects by itself and says so", w.err)
    # Counted before the change: the wait must be for a new line, not for
    # the probes of the start (it once passed at once on those, then failed).
    seen = sum(e[0] == "probe" for e in w.events())
    hub.ctl("site", "label", "probe", "after=restart")
    h.check(h.wait_until(lambda: sum(e[0] == "probe" for e in w.events()) > seen
                         and w.lines()[-1].split()[2:] == ["probe", "changed", "pending"],
                         10, 0.1), "changes show again after the restart", w.lines()[-3:])

    for x, name in ((w, "text"), (wj, "--json"), (wo, "scoped")):
        rc = x.stop()
        h.check(rc == 0, "SIGINT ends the %s watch with exit 0" % name, (rc, x.err[-3:]))
    h.check([ln.split(" (")[0].split(";")[0] for _, ln in wo.err] ==
            ["tetherctl: lost the hub's event stream", "tetherctl: watching again"],
            "the scoped watch told only of the restart", wo.err)

    # Refusals come at once, with the exit codes of other commands.
    r = hub.ctl("site", "watch", token="tth_bogus", timeout=20)
    h.check(r.rc == 4 and "(HTTP 401)" in r.stderr, "a bad token: exit 4 at once", r)
    r = h.run([h.bin("tetherctl"), "--config", hub.ctl_conf, "--hub", "https://127.0.0.1:1",
               "site", "watch"], timeout=20)
    h.check(r.rc == 6 and "cannot connect" in r.stderr, "no hub at the address: exit 6 at once", r)
    r = hub.ctl("site", "watch", "extra", timeout=20)
    h.check(r.rc == 2, "an extra argument: usage error", r)


Harness.main("test_site_watch", main)

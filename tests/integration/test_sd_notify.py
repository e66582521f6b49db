#!/usr/bin/env python3
# Integration: the hub and the site agent speak sd_notify to a real NOTIFY_SOCKET: READY, STATUS, WATCHDOG, STOPPING.
# SPDX-License-Identifier: MIT
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Proc, Service, Site  # noqa: E402

SITE = "notify-a"


class NotifySocket:
    """A unix datagram socket as systemd binds for a Type=notify service."""

    def __init__(self, h, name):
        self.path = h.path(name + ".notify")
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(self.path)
        self.s.settimeout(0.2)
        self.got = []

    def wait(self, pred, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.got:
                if pred(m):
                    return m
            try:
                self.got.append(self.s.recv(4096).decode())
            except socket.timeout:
                pass
        return None


def main(h):
    hub = h.hub()
    hub.init()
    hn = NotifySocket(h, "hub")
    # WATCHDOG_PID is the hub's own PID only after the start: the tuning
    # re-exec keeps it, so the harness cannot know it; systemd sets it to the
    # main PID, which is what the hub is. Without WATCHDOG_PID, libsystemd
    # accepts WATCHDOG_USEC for any process.
    hub.start(env={"NOTIFY_SOCKET": hn.path, "WATCHDOG_USEC": "400000"})
    m = hn.wait(lambda m: "READY=1" in m)
    if not h.check(m is not None, "the hub sends READY=1 once listening", hn.got):
        return
    h.check(any(m.startswith("STATUS=0 sites online") for m in hn.got),
            "the hub's STATUS says 0 sites online", hn.got)
    h.check(hn.wait(lambda m: m == "WATCHDOG=1", 5) is not None,
            "the hub sends WATCHDOG=1 (WATCHDOG_USEC=400 ms: every 200 ms)", hn.got)

    svc = Service(h, site_name=SITE)
    token = hub.site_add(SITE)
    site = Site(h, SITE, hub)
    site.enroll(token)
    sn = NotifySocket(h, "site")
    argv = [h.bin("tether-site"), "run", "--state", site.dir, "--service", "web=" + svc.url]
    site.proc = Proc(h, "site-" + SITE, argv, env=dict(h.env, NOTIFY_SOCKET=sn.path,
                                                      WATCHDOG_USEC="400000"), daemon=True)
    site.proc.wait_log(r"\bconnected hub=", 15)
    h.check(sn.wait(lambda m: m == "READY=1") is not None,
            "the agent sends READY=1 once the tunnel is up", sn.got)
    ready_at = sn.got.index("READY=1")
    h.check("STATUS=tunnel connected" in sn.got[:ready_at + 2],
            "the agent's STATUS says the tunnel is connected", sn.got)
    h.check(sn.wait(lambda m: m == "WATCHDOG=1", 5) is not None,
            "the agent sends WATCHDOG=1", sn.got)
    h.check(hn.wait(lambda m: m.startswith("STATUS=1 sites online"), 10) is not None,
            "the hub's STATUS counts the site online", hn.got[-5:])

    site.proc.signal(signal.SIGTERM)
    h.check(sn.wait(lambda m: m == "STOPPING=1", 10) is not None,
            "the agent sends STOPPING=1 on SIGTERM", sn.got[-5:])
    try:
        rc = site.proc.p.wait(15)
    except Exception as e:  # noqa: BLE001
        rc = e
    h.check(rc == 0, "the agent then exits 0", rc)
    hub.proc.signal(signal.SIGTERM)
    h.check(hn.wait(lambda m: m == "STOPPING=1", 10) is not None,
            "the hub sends STOPPING=1 when the drain begins", hn.got[-5:])


Harness.main("sd_notify", main)

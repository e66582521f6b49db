#!/usr/bin/env python3
# Integration: tether-hub run's time and size settings: the bounds of each range are accepted, values outside get a clear error and no hub.
# SPDX-License-Identifier: MIT
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402


def run_fails(h, hub, args):
    """tether-hub run that must refuse to start: (rc, stderr)."""
    r = h.run([h.bin("tether-hub"), "run", "--state", hub.dir, "--listen", hub.addr] + args,
              timeout=20)
    return r.rc, r.stderr


def main(h):
    hub = h.hub()
    hub.init()
    conf = os.path.join(hub.dir, "hub.conf")
    with open(conf) as f:
        original = f.read()

    # Both ends of the --ping-interval range start a hub that uses them.
    for flag, ms in (("3600", 3600000), ("0.05", 50)):
        hub.start(["--ping-interval", flag])
        h.check(hub.proc.wait_log(r"\bping_interval_ms=%d\b" % ms, 5, fatal=False),
                "--ping-interval %s is accepted and used (%d ms)" % (flag, ms))
        hub.proc.stop()

    # Just outside: usage error (exit 2) naming the flag and the range.
    for flag in ("3600.5", "0.04", "-1", "20s", ""):
        rc, err = run_fails(h, hub, ["--ping-interval", flag])
        h.check(rc == 2 and "--ping-interval" in err and "0.05 to 3600" in err,
                "--ping-interval %r is refused with the range" % flag, (rc, err))

    # hub.conf: a bad value names the file, the line, the key and the range.
    for line, key, want in (("ping_interval = 0.01", "ping_interval", "0.05 to 3600"),
                            ("query_body_max = 100", "query_body_max", "1024 to 268435456"),
                            ("query_body_max = 1e9", "query_body_max", "1024 to 268435456"),
                            ("request_timeout = never", "request_timeout", "0.1 to 86400"),
                            # the same 30-day bound as a request's ttl_s
                            ("enroll_ttl = 2592001", "enroll_ttl", "60 to 2592000")):
        with open(conf, "w") as f:
            f.write(original + line + "\n")
        n = len((original + line).splitlines())
        rc, err = run_fails(h, hub, [])
        h.check(rc == 1 and re.search(r"hub\.conf:%d: bad %s " % (n, key), err) is not None
                and want in err, "hub.conf %r is refused at its line with the range" % line,
                (rc, err))

    # In range: the hub starts with it.
    with open(conf, "w") as f:
        f.write(original + "ping_interval = 3600\nquery_body_max = 268435456\n")
    hub.start()
    h.check(hub.proc.wait_log(r"\bping_interval_ms=3600000\b", 5, fatal=False),
            "hub.conf ping_interval = 3600 is used")
    hub.proc.stop()


Harness.main("test_hub_config", main)

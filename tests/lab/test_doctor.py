#!/usr/bin/env python3
# Lab: tether-site doctor gives each broken stage its own verdict, exit code and request for the network team.
# SPDX-License-Identifier: MIT
"""Stages broken one at a time, each on the real path through the lab:
DNS failure (10), port blocked without SYN-ACK (11), a blocked fallback
endpoint (warning only, 0), wrong pin (15), slow path (18), revoked site
(17); a healthy run (0) first. Interception (14) is in test_intercept.py and
the proxy (12) in test_proxy.py."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import HUB_IP, HUB_NAME, SITE_IPS, LabHarness, openssl_pin, read_conf  # noqa: E402

STAGES = ("dns", "tcp", "tls", "pin", "alpn", "credentials", "rtt")
NO_INBOUND = "no inbound rule is needed"
DELAY_MS = 400


def verdicts(out):
    """[(stage, verdict)] from doctor's output."""
    return re.findall(r"^(\w+)\s+(\S+)\s", out, re.M)


def conf(h, name, **kv):
    path = h.path(name + ".conf")
    with open(path, "w") as f:
        for k, v in kv.items():
            for one in (v if isinstance(v, list) else [v]):
                f.write("%s = %s\n" % (k, one))
    return path


def main(h):
    lab = h.lab()
    hub = h.hub(ports=(6443, 443))
    hub.init()
    hub.start(["--ping-interval", "2"])
    site = h.site("site1", "doc-a", hub)
    site.enroll(hub.site_add("doc-a"))
    site2 = h.site("site2", "doc-b", hub)
    site2.enroll(hub.site_add("doc-b"))
    only6443 = conf(h, "only6443", hub="%s:6443" % HUB_NAME)

    # --- healthy ------------------------------------------------------------
    codes = {}
    r = site.doctor("--config", only6443, "--timeout", "3")
    codes["healthy"] = r.rc
    h.info("healthy:\n" + r.stdout)
    h.check(r.rc == 0, "doctor on a healthy path exits 0", r)
    got = verdicts(r.stdout)
    h.check([s for s, v in got if v == "ok"] == list(STAGES),
            "one ok verdict per stage, in order: %s" % ", ".join(STAGES), got)
    h.check(re.search(r"^result: ok", r.stdout, re.M), "and a result line", r.stdout)

    # --- DNS ----------------------------------------------------------------
    bad_dns = conf(h, "baddns", hub="nohub.lab:6443")
    t = time.monotonic()
    r = site.doctor("--config", bad_dns, "--timeout", "3")
    codes["dns"] = r.rc
    h.check(r.rc == 10, "an unresolvable hub name: exit 10 (%.1f s)" % (time.monotonic() - t), r)
    h.check(re.search(r"^dns\s+FAIL\s+hub nohub\.lab does not resolve", r.stdout, re.M),
            "dns FAIL verdict names the host", r.stdout)
    h.check(re.search(r"-> ask .*nohub\.lab.*port 6443.*" + NO_INBOUND, r.stdout),
            "and says what to ask for: the name, the port, no inbound rule", r.stdout)
    h.check(not re.search(r"^tcp\s", r.stdout, re.M), "doctor stops at the failing stage",
            r.stdout)

    # --- port blocked: SYN dropped, no SYN-ACK --------------------------------
    lab.netteam("ip saddr %s ip daddr %s tcp dport 6443 drop" % (SITE_IPS["site1"], HUB_IP))
    t = time.monotonic()
    r = site.doctor("--config", only6443, "--timeout", "2")
    took = time.monotonic() - t
    codes["blocked"] = r.rc
    h.info("blocked:\n" + r.stdout)
    h.check(r.rc == 11, "port 6443 blocked: exit 11", r)
    h.check(re.search(r"^tcp\s+blocked\s.*hub\.lab:6443 \(10\.77\.1\.1:6443\).*no SYN-ACK",
                      r.stdout, re.M), "tcp verdict 'blocked' says SYN sent, no SYN-ACK",
            r.stdout)
    h.check(re.search(r"-> ask the network team: allow outbound TCP from this host to hub\.lab "
                      r"port 6443 \(10\.77\.1\.1\); " + NO_INBOUND, r.stdout),
            "and asks for exactly: outbound TCP to hub.lab port 6443, no inbound rule", r.stdout)
    h.check(took < 2 + 3, "within its timeout (%.1f s)" % took)

    # The same block, with 443 as a second endpoint: a warning, not a failure.
    r = site.doctor("--timeout", "2")
    h.check(r.rc == 0, "with both endpoints in site.conf, the blocked first one is only a "
            "warning (exit 0)", r)
    h.check(re.search(r"^tcp\s+blocked\s.*:6443", r.stdout, re.M) and
            re.search(r"^tcp\s+ok\s.*hub\.lab:443\b", r.stdout, re.M) and
            re.search(r"^endpoints\s+warn\s", r.stdout, re.M),
            "it shows 6443 blocked, 443 ok, and a warning", r.stdout)
    lab.netteam()

    # --- wrong pin (site.conf pins another key) -----------------------------
    other_pin = read_conf(os.path.join(site2.dir, "site.conf")).get("hub_pin", [""])[0]
    # A valid pin that is not the hub's: the site's own key.
    wrong = openssl_pin(os.path.join(site.dir, "site.crt"))
    h.check(wrong and wrong != other_pin, "a valid pin that is not the hub's", wrong)
    wrong_conf = conf(h, "wrongpin", hub="%s:6443" % HUB_NAME, hub_pin=wrong)
    r = site.doctor("--config", wrong_conf, "--timeout", "3")
    codes["wrong pin"] = r.rc
    h.info("wrong pin:\n" + r.stdout)
    h.check(r.rc == 15, "a wrong hub_pin: exit 15", r)
    h.check(re.search(r"^pin\s+wrong-pin\s.*self-signed key %s" % re.escape(hub.pin), r.stdout,
                      re.M), "pin verdict 'wrong-pin' shows the key the hub presents", r.stdout)
    h.check(re.search(r"ask the hub operator: whether the hub key changed", r.stdout) and
            re.search(r"ask the network team: .*hub\.lab:6443.*" + NO_INBOUND, r.stdout),
            "and says whom to ask what", r.stdout)

    # --- slow path -------------------------------------------------------------
    how = lab.slow_path("site2", DELAY_MS)
    h.info("slow path for site2: +%d ms by %s" % (DELAY_MS, how))
    r = site2.doctor("--config", only6443, "--timeout", "5")
    codes["slow"] = r.rc
    h.info("slow:\n" + r.stdout)
    h.check(r.rc == 18, "a %d ms path: exit 18 (slow)" % DELAY_MS, r)
    m = re.search(r"^rtt\s+slow\s+median round trip (\d+) ms", r.stdout, re.M)
    h.check(m and DELAY_MS <= int(m.group(1)) < DELAY_MS + 200,
            "rtt verdict 'slow' with the measured round trip (about %d ms)" % DELAY_MS,
            r.stdout)
    h.check(re.search(r"^credentials\s+ok\b", r.stdout, re.M),
            "every stage before it passed", r.stdout)
    h.check(re.search(r"ask the network team: .*hub\.lab:6443.*" + NO_INBOUND, r.stdout),
            "and it names the destination for the network team", r.stdout)
    r = site2.doctor("--config", only6443, "--timeout", "5", "--rtt-warn", str(DELAY_MS * 3))
    h.check(r.rc == 0, "with --rtt-warn above the delay, the same path passes", r)

    # --- revoked ----------------------------------------------------------------
    rv = hub.revoke("doc-a")
    h.check(rv.status == 200, "the operator revokes doc-a", rv)
    r = site.doctor("--config", only6443, "--timeout", "3")
    codes["revoked"] = r.rc
    h.info("revoked:\n" + r.stdout)
    h.check(r.rc == 17, "a revoked site: exit 17", r)
    h.check(re.search(r"^credentials\s+refused\s.*revoked", r.stdout, re.M),
            "credentials verdict 'refused' (revoked, disabled or unknown)", r.stdout)
    h.check(re.search(r"^alpn\s+ok\b", r.stdout, re.M), "the network stages before it passed",
            r.stdout)
    h.check(re.search(r"ask the hub operator: .*doc-a", r.stdout) and
            "nothing to ask the network team" in r.stdout,
            "it sends the admin to the hub operator, not the network team", r.stdout)

    h.check(len(set(codes.values())) == len(codes),
            "every case above ended with its own exit code", codes)


LabHarness.main("lab_doctor", main)

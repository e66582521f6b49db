#!/usr/bin/env python3
# Lab: egress through a real HTTP CONNECT proxy (tinyproxy) with basic auth; the proxy sees only ciphertext.
# SPDX-License-Identifier: MIT
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import (HUB_IP, HUB_NAME, ROUTER_HUB_IP, ROUTER_SITE_IPS, SITE_IPS, LabHarness,  # noqa
                 Skip)

SITE = "lab-proxy"
USER, PASSWORD = "labuser", "s3cret"
# The user name goes percent-encoded in the URL, as a user name with an
# '@' would have to.
PROXY_URL = "http://lab%%75ser:%s@proxy.lab:8888" % PASSWORD


def tinyproxy_conf(h):
    d = h.mkdir("tinyproxy")
    path = os.path.join(d, "tinyproxy.conf")
    with open(path, "w") as f:
        f.write("Port 8888\nListen %s\nTimeout 600\nAllow %s/24\nConnectPort 6443\n"
                "ConnectPort 443\nBasicAuth %s %s\nLogLevel Info\nMaxClients 50\n"
                "PidFile \"%s/tinyproxy.pid\"\nLogFile \"%s/tinyproxy.log\"\n"
                % (ROUTER_SITE_IPS["site1"], SITE_IPS["site1"], USER, PASSWORD, d, d))
    return path, os.path.join(d, "tinyproxy.log")


def main(h):
    if not shutil.which("tinyproxy"):
        raise Skip("tinyproxy not found (Debian package tinyproxy; deploy/setup.sh installs it)")
    lab = h.lab()
    hub = h.hub()
    hub.init()
    hub.start(["--ping-interval", "2"])
    svc = h.service("site1", "svc-proxy", SITE)
    site = h.site("site1", SITE, hub)
    site.enroll(hub.site_add(SITE))

    # The network team: site1 may not reach the hub directly, only its proxy.
    conf, tlog = tinyproxy_conf(h)
    proxy = h.spawn("tinyproxy", ["tinyproxy", "-d", "-c", conf], role="router")
    deadline = time.monotonic() + 10
    while lab.tcp_connect("site1", ROUTER_SITE_IPS["site1"], 8888, timeout=0.5) != "ok":
        if time.monotonic() > deadline or not proxy.alive():
            raise Skip("tinyproxy did not start: %s" % proxy.text()[-300:])
        time.sleep(0.1)
    lab.netteam("ip saddr %s ip daddr %s counter drop" % (SITE_IPS["site1"], HUB_IP))
    h.check(lab.tcp_connect("site1", HUB_IP, 6443, timeout=1.5) == "timeout",
            "site1 cannot reach the hub directly")

    cap = h.path("capture.bin")
    sniffer = h.spawn("sniffer", [sys.executable, h.script("sniff.py"), cap], role="router")
    sniffer.wait_log(r"^sniffing$", 10)

    cfg = h.path("proxy.conf")
    with open(cfg, "w") as f:
        f.write("# egress through the network team's proxy\nproxy = %s\n" % PROXY_URL)
    site.start({"web": svc.url}, ["--config", cfg, "--ping-interval", "2"])
    text = site.proc.text()
    h.check(re.search(r"\bconnected hub=%s:6443 .*\bvia=proxy\b" % re.escape(HUB_NAME), text),
            "the site connects through the proxy (proxy = ... in its --config file)",
            text[-400:])
    h.check(PASSWORD not in text and "s3cret" not in text,
            "the proxy password never appears in the site's log")
    s = hub.wait_ready(SITE, 10)
    remote = (s or {}).get("remote_addr") or ""
    h.check(remote.startswith(ROUTER_HUB_IP + ":"),
            "the hub sees the tunnel coming from the proxy (%s)" % ROUTER_HUB_IP, remote)

    marker = os.urandom(16).hex()
    r = hub.proxy(SITE, "web", "/echo?m=%s" % marker, headers={"X-Lab-Marker": marker})
    h.check(r.status == 200 and marker in (r.body or b"").decode("utf-8", "replace"),
            "a request through the proxied tunnel works (marker echoed back)", r)
    body = (marker * 4096).encode()
    r = hub.proxy(SITE, "web", "/sha256", method="POST", data=body)
    h.check(r.status == 200, "a 128 KiB POST through the proxy works", r)
    time.sleep(0.3)
    sniffer.stop()
    with open(cap, "rb") as f:
        seen = f.read()
    h.check(b"CONNECT %s:6443 HTTP/1.1" % HUB_NAME.encode() in seen,
            "the capture on the proxy's host sees the plaintext CONNECT (so it sees the traffic)",
            len(seen))
    h.check(len(seen) > len(body), "the capture holds the tunnel's bytes (%d bytes)" % len(seen))
    h.check(marker.encode() not in seen,
            "but never the request or the response: TLS is end to end, the proxy sees only "
            "ciphertext")
    tl = open(tlog, errors="replace").read() if os.path.exists(tlog) else ""
    h.check(re.search(r"CONNECT", tl) is not None, "tinyproxy logged the CONNECT", tl[-300:])

    # --- enroll and rotate-key through the proxy ------------------------
    SITE2 = SITE + "-2"
    site2 = h.site("site1", SITE2, hub)
    tok = hub.site_add(SITE2)
    r = site2.enroll(tok, ["--proxy", "http://%s:wrong@proxy.lab:8888" % USER], check=False)
    h.check(r.rc != 0 and re.search(r"refused the credentials \(40[17]", r.stderr)
            and "USER:PASS" in r.stderr and "wrong" not in r.stderr,
            "enroll through the proxy with a wrong password says the proxy refused the "
            "credentials, without the password", r)
    r = site2.enroll(tok, ["--proxy", PROXY_URL])
    h.check(r.rc == 0 and "enrolled site %s" % SITE2 in r.stdout,
            "enroll reaches the hub through the proxy (the direct path is dropped)", r)
    with open(os.path.join(site2.dir, "site.conf")) as f:
        sc = f.read()
    h.check(re.search(r"^proxy = %s$" % re.escape(PROXY_URL), sc, re.M) is not None,
            "enroll writes the proxy that worked into site.conf", sc)
    site2.start({"web": svc.url}, ["--ping-interval", "2"])
    h.check(re.search(r"\bvia=proxy\b", site2.proc.text()) is not None
            and hub.wait_ready(SITE2, 10) is not None,
            "the enrolled site runs through the proxy from site.conf alone")
    old_pin = (hub.site_show(SITE2) or {}).get("pin")
    r = h.run(lab.argv("site1", [h.bin("tether-site"), "rotate-key", "--state", site2.dir]),
              timeout=60)
    h.check(r.rc == 0 and (hub.site_show(SITE2) or {}).get("pin") not in (None, old_pin),
            "rotate-key goes through the proxy of site.conf", r)
    h.check(hub.wait_ready(SITE2, 15) is not None, "and the agent is back with its new key")
    site2.proc.stop()

    # --- doctor, through the proxy and with wrong credentials -------------
    r = site.doctor("--config", cfg, "--timeout", "5")
    h.check(r.rc == 0 and re.search(r"^proxy\s+ok\b", r.stdout, re.M),
            "doctor passes through the proxy, with a proxy verdict line", r)
    h.info("doctor through the proxy:\n" + r.stdout)
    bad = "http://%s:wrong@proxy.lab:8888" % USER
    r = site.doctor("--proxy", bad, "--timeout", "5")
    h.check(r.rc == 12, "doctor with a wrong proxy password exits 12 (proxy)", r)
    # 407 is the standard answer; tinyproxy sends 401.
    h.check(re.search(r"^proxy\s+FAIL\b.*\b40[17]\b", r.stdout, re.M),
            "... saying the proxy refused the credentials (401/407)", r.stdout)
    h.check("ask the network team" in r.stdout and "USER:PASS" in r.stdout,
            "... and what to ask for (credentials in the proxy URL)", r.stdout)
    h.check("wrong" not in r.stdout, "... without printing the password")

    # The agent with a wrong password says why and keeps trying.
    site.proc.stop()
    site.start({"web": svc.url}, ["--proxy", bad, "--ping-interval", "2"], wait=False)
    m = site.proc.wait_log(r"\bconnect_failed\b.*refused CONNECT.*40[17].*user:password", 10,
                            fatal=False)
    h.check(m is not None, "the agent logs the proxy's refusal of its credentials as the reason",
            site.proc.text()[-400:])
    site.proc.stop()
    proxy.stop()


LabHarness.main("lab_proxy", main, tools=("curl",))

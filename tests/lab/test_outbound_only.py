#!/usr/bin/env python3
# Lab: a site behind a firewall that drops every new inbound connection serves requests through its tunnel.
# SPDX-License-Identifier: MIT
import hashlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import HUB_IP, SITE_IPS, LabHarness, query_engine, query_result  # noqa: E402

SITE = "lab-out"


def main(h):
    lab = h.lab()
    hub = h.hub()
    hub.init()
    hub.start(["--ping-interval", "2"])
    # The service listens on every address of the site host, so only the
    # firewall stands between it and the outside.
    svc = h.service("site1", "svc-out", SITE, port=8080, bind="0.0.0.0")
    site = h.site("site1", SITE, hub)
    site.enroll(hub.site_add(SITE))
    site.start({"web": svc.url}, ["--ping-interval", "2"])
    s = hub.wait_ready(SITE, 10)
    h.check(s is not None, "the site behind the outbound-only firewall is online", s)
    remote = (s or {}).get("remote_addr") or ""
    h.check(remote.startswith(SITE_IPS["site1"] + ":"),
            "the hub sees the tunnel coming from the site host %s" % SITE_IPS["site1"], remote)

    r = hub.proxy(SITE, "web", "/echo?lab=outbound")
    h.check(r.status == 200 and (r.json() or {}).get("query") == "lab=outbound",
            "a proxied GET through the tunnel answers 200 with the service's echo", r)
    body = os.urandom(300 * 1024)
    r = hub.proxy(SITE, "web", "/sha256", method="POST", data=body)
    h.check(r.status == 200 and hashlib.sha256(body).hexdigest() in (r.body or b"").decode(),
            "a 300 KiB POST reaches the service whole (sha256 matches)", r)
    r = hub.proxy(SITE, "web", "/bytes/2000000")
    h.check(r.status == 200 and r.size == 2000000, "a 2 MB response comes back whole", r)

    # --- nothing gets in by itself --------------------------------------
    dropped0 = lab.counter("site1", "sitefw", "inbound_dropped")
    for role in ("hub", "router"):
        res = lab.tcp_connect(role, SITE_IPS["site1"], 8080, timeout=2.0)
        h.check(res != "ok", "a direct inbound connection from the %s to the site's service "
                "(%s:8080) is refused" % (role, SITE_IPS["site1"]), res)
        h.check(res == "timeout", "... silently (dropped, no SYN-ACK), as a stateful firewall "
                "does", res)
    dropped1 = lab.counter("site1", "sitefw", "inbound_dropped")
    h.check(dropped1 > dropped0, "the site firewall's drop counter counted those SYNs",
            (dropped0, dropped1))
    res = lab.tcp_connect("site1", SITE_IPS["site1"], 8080, timeout=2.0)
    h.check(res == "ok", "the same service answers on the site host itself (so the firewall, "
            "not the service, refused)", res)
    # The hub listens too, but the site only ever dials out.
    h.check(lab.tcp_connect("site1", HUB_IP, 6443) == "ok", "outbound TCP to the hub works")

    r = hub.proxy(SITE, "web", "/echo?after=probes")
    h.check(r.status == 200, "the tunnel still serves after the probes", r)

    # --- site2 behind the example firewall shipped in deploy/ -------------
    path = os.path.join(h.src_dir, "deploy", "nftables-site.nft")
    with open(path) as f:
        text = f.read()
    text, n1 = re.subn(r"(?m)^define HUB_ADDRS = .*$", "define HUB_ADDRS = { %s }" % HUB_IP, text)
    text, n2 = re.subn(r"(?m)^define RESOLVERS = .*$", "define RESOLVERS = { 127.0.0.1 }", text)
    h.check(n1 == 1 and n2 == 1, "deploy/nftables-site.nft has the documented defines")
    lab.sh("site2", "nft", "delete", "table", "inet", "sitefw")
    r = lab.nft("site2", text)
    h.check(r.rc == 0, "deploy/nftables-site.nft loads (with the lab's hub address)", r)
    svc2 = h.service("site2", "svc-out2", SITE + "2", port=8080, bind="0.0.0.0")
    site2 = h.site("site2", SITE + "2", hub)
    site2.enroll(hub.site_add(SITE + "2"))
    site2.start({"web": svc2.url}, ["--ping-interval", "2"])
    r = hub.proxy(SITE + "2", "web", "/echo?fw=deploy")
    h.check(r.status == 200, "a site behind the documented firewall serves through its tunnel", r)
    res = lab.tcp_connect("hub", SITE_IPS["site2"], 8080, timeout=1.5)
    h.check(res == "timeout", "and refuses direct inbound connections", res)
    res = lab.tcp_connect("site2", HUB_IP, 7443, timeout=1.5)
    h.check(res != "ok", "its strict egress lets out only the hub's ports", res)

    # --- federated queries, once the query engine exists ------------------
    if query_engine(hub):
        r = hub.api("POST", "/v1/queries", {"sites": [SITE], "service": "web", "method": "GET",
                                            "path": "/echo?q=federated", "timeout_s": 10})
        h.check(r.status == 201, "POST /v1/queries accepted", r)
        qid = (r.json() or {}).get("id")
        res = None
        deadline = time.monotonic() + 15
        while qid and time.monotonic() < deadline:
            res = query_result(hub, qid, SITE)
            if res and res.get("status") not in ("queued", "sent"):
                break
        h.check(res and res.get("status") == "done" and res.get("http_status") == 200 and
                "q=federated" in (res.get("body") or ""),
                "a federated query reaches the site behind the firewall and comes back", res)
    else:
        h.info("POST /v1/queries is not served by this hub yet: federated query part not run")


LabHarness.main("lab_outbound_only", main)

#!/usr/bin/env python3
# Lab: a TLS-inspecting middlebox on the path is detected and refused by the site, named as interception.
# SPDX-License-Identifier: MIT
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import HUB_IP, HUB_NAME, SITE_IPS, LabHarness, Skip, openssl_pin  # noqa: E402

SITE = "lab-mitm"
MITM_PORT = 7443
CA_NAME = "Lab Inspection CA"


def make_certs(h):
    """A CA and a leaf for hub.lab signed by it, as inspection boxes make."""
    d = h.mkdir("mitm")
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = (os.path.join(d, n) for n in ("leaf.key", "leaf.csr", "leaf.crt"))
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s\n" % HUB_NAME)
    steps = [
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj",
         "/CN=%s/O=Network Team" % CA_NAME],
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", "/CN=%s" % HUB_NAME],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext],
    ]
    for argv in steps:
        r = h.run(argv, timeout=30)
        if r.rc != 0:
            raise Skip("openssl cannot make the interceptor's certificates: %r" % r)
    # The box presents leaf + CA, as real ones do.
    chain = os.path.join(d, "chain.crt")
    with open(chain, "w") as out:
        out.write(open(crt).read() + open(ca_crt).read())
    return chain, key, crt


def main(h):
    if not shutil.which("openssl"):
        raise Skip("openssl not found (Debian package openssl)")
    lab = h.lab()
    hub = h.hub()
    hub.init()
    hub.start(["--ping-interval", "2"])
    svc = h.service("site1", "svc-mitm", SITE)
    site = h.site("site1", SITE, hub)
    site.enroll(hub.site_add(SITE))
    site.start({"web": svc.url}, ["--ping-interval", "2"])
    h.check(hub.wait_ready(SITE, 10) is not None, "site online before the middlebox appears")

    chain, key, leaf = make_certs(h)
    leaf_pin = openssl_pin(leaf)
    mitm = h.spawn("interceptor", [sys.executable, h.script("intercept.py"), str(MITM_PORT),
                                   HUB_IP, "6443", chain, key], role="router")
    mitm.wait_log(r"^listening %d$" % MITM_PORT, 10)
    # The network team turns on TLS inspection for site1's traffic to the hub.
    lab.netteam_nat("ip saddr %s ip daddr %s tcp dport 6443 redirect to :%d"
                    % (SITE_IPS["site1"], HUB_IP, MITM_PORT))

    # The running tunnel is not affected (the NAT applies to new connections):
    # restart the site so that it dials through the middlebox.
    site.proc.stop()
    hmark = hub.proc.mark()
    site.start({"web": svc.url}, ["--ping-interval", "2"], wait=False)
    m = site.proc.wait_log(r"\btls_intercepted\b.*", 15, fatal=False)
    h.check(m is not None, "the site logs tls_intercepted", site.proc.text()[-500:])
    line = m.group(0) if m else ""
    h.check("expected=%s" % hub.pin in line and "got=%s" % leaf_pin in line,
            "... with the pinned hub key and the middlebox's key", line)
    m2 = site.proc.wait_log(r"\bconnect_failed\b.*intercepts TLS", 5, fatal=False)
    h.check(m2 is not None, "the failure reason names interception, not a generic handshake "
            "failure", m2 and m2.group(0))
    m3 = mitm.wait_log(r"^client %s:\d+ handshake failed:.*" % re.escape(SITE_IPS["site1"]), 10,
                       fatal=False)
    h.check(m3 is not None, "the middlebox really saw the site's handshake, and the site "
            "aborted it", mitm.text()[-300:])
    h.info("interceptor: %s" % (m3.group(0) if m3 else "-"))
    time.sleep(1.0)
    h.check(re.search(r"\bconnected hub=", site.proc.text()) is None,
            "the site never accepts the intercepted connection")
    h.check(re.search(r"\bsite_connected\b", hub.proc.text(hmark)) is None,
            "the hub never sees the site through the middlebox")
    h.check(re.search(r"intercepted, upstream", mitm.text()) is None,
            "nothing was relayed: no byte of the tunnel went through the middlebox")

    r = site.doctor("--timeout", "3")
    h.info("doctor:\n" + r.stdout)
    h.check(r.rc == 14, "doctor exits 14 (intercepted)", r)
    h.check(re.search(r"^pin\s+intercepted\b.*%s" % re.escape(CA_NAME), r.stdout, re.M),
            "doctor's pin verdict says intercepted and names the issuing CA", r.stdout)
    h.check(re.search(r"ask the network team: exempt %s:6443 from TLS inspection.*no inbound "
                      r"rule is needed" % re.escape(HUB_NAME), r.stdout),
            "and says what to ask the network team: exempt hub.lab:6443, outbound only",
            r.stdout)

    # Inspection off again: the site gets back by itself.
    lab.netteam_nat()
    m = site.proc.wait_log(r"\bconnected hub=", 40, fatal=False)
    h.check(m is not None, "with the middlebox gone, the site connects again by itself")
    h.check(hub.wait_ready(SITE, 10) is not None, "and is online")
    mitm.stop()


LabHarness.main("lab_intercept", main)

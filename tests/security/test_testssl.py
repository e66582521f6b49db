#!/usr/bin/env python3
# Attack suite: testssl.sh (Debian's package) against the hub's users' side: protocols, ciphers, preferences, certificate, vulnerabilities.
# SPDX-License-Identifier: MIT
"""What "held" means: testssl.sh reports nothing vulnerable (no finding
"VULNERABLE" or "potentially vulnerable", LUCKY13 included), no obsolete CBC
suite offered, only TLS 1.2 and 1.3, TLS 1.3 negotiated by default, every
TLS 1.2 suite ECDHE with AES-GCM or ChaCha20-Poly1305, and no MEDIUM, HIGH or
CRITICAL finding except the three that come from the hub's self-signed
certificate, which users pin on purpose (chain of trust, no CRL/OCSP, a
20-year validity: the pin is the trust anchor, not a CA or the dates). After
the scan another user is served normally through a site."""
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Harness, Skip  # noqa: E402

# Protocols, standard cipher categories, server preferences, each cipher per
# protocol, server defaults (the certificate), vulnerabilities: about a
# minute on a busy 2-core machine, each flag costing 15-30 s alone. Not -f
# (every suite of -E is checked to be ECDHE), -h (HTTP headers: the API is
# not a web site) nor client simulation.
FLAGS = ["-p", "-s", "-P", "-E", "-S", "-U"]
PINNED_CERT = {
    "cert_chain_of_trust": "self signed",
    "cert_revocation": "Neither CRL nor OCSP URI provided",
    "cert_validityPeriod": "days",
}
AEAD_12 = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
           "ECDHE-ECDSA-CHACHA20-POLY1305"}


def testssl_bin():
    for name in ("testssl", "testssl.sh"):
        p = shutil.which(name)
        if p:
            return p
    raise Skip("testssl.sh not installed (deploy/setup.sh installs Debian's testssl.sh)")


def main(h):
    prog = testssl_bin()
    hub, site, svc = h.setup("scanned")
    out_json = h.path("testssl.json")
    t0 = time.monotonic()
    r = h.run([prog, "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
               "--ip", "127.0.0.1", "--connect-timeout", "10", "--openssl-timeout", "10",
               "--jsonfile", out_json] + FLAGS + ["127.0.0.1:%d" % hub.port], timeout=240)
    took = time.monotonic() - t0
    h.info("testssl.sh took %.1f s (rc=%s)" % (took, r.rc))
    text = r.stdout
    try:
        with open(out_json) as f:
            findings = json.load(f)
    except (OSError, ValueError) as e:
        h.check(False, "testssl.sh wrote its JSON findings", "%s; output: %s" % (e, text[-2000:]))
        return
    by_id = {}
    for f in findings:
        by_id.setdefault(f.get("id"), []).append(f)

    def one(fid):
        v = by_id.get(fid) or [{}]
        return v[0].get("finding", "")

    # The scan really ran: protocols and vulnerabilities were judged.
    for fid in ("TLS1_2", "TLS1_3", "heartbleed", "LUCKY13", "ROBOT", "cipherlist_STRONG"):
        h.check(fid in by_id, "testssl.sh judged %s" % fid, sorted(by_id)[:40])

    for fid in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        h.check(one(fid) == "not offered", "%s not offered" % fid, one(fid))
    h.check(one("TLS1_2") == "offered", "TLS 1.2 offered", one("TLS1_2"))
    h.check(one("TLS1_3").startswith("offered"), "TLS 1.3 offered", one("TLS1_3"))
    h.check("TLS1.3" in one("protocol_negotiated"), "TLS 1.3 is negotiated by default",
            one("protocol_negotiated"))

    # No CBC: testssl's "Obsolete CBC ciphers" category (cipherlist_AVERAGE in
    # 3.0, cipherlist_OBSOLETED in later versions) and LUCKY13.
    for fid in ("cipherlist_AVERAGE", "cipherlist_OBSOLETED", "cipherlist_3DES_IDEA",
                "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW"):
        if fid in by_id:
            h.check(one(fid).startswith("not offered"), "%s not offered" % fid, one(fid))
    h.check(one("LUCKY13").startswith("not vulnerable"), "LUCKY13 not vulnerable",
            one("LUCKY13"))

    # Every TLS 1.2 suite offered (testssl -E) is ECDHE with an AEAD cipher.
    suites12 = set()
    for fid, fs in by_id.items():
        if fid and fid.startswith("cipher-tls1_2_"):
            for f in fs:
                m = re.match(r"TLS 1\.2\s+x[0-9a-fA-F]+\s+(\S+)", f["finding"])
                if m:
                    suites12.add(m.group(1))
    h.check(suites12 and suites12 <= AEAD_12,
            "TLS 1.2 offers only ECDHE with AES-GCM or ChaCha20-Poly1305", sorted(suites12))

    # Nothing vulnerable, nothing of severity MEDIUM and up but the pinned
    # self-signed certificate's three.
    vuln = [f for f in findings if re.search(r"(?<!not )vulnerable", f.get("finding", ""), re.I)]
    h.check(not vuln, "no finding says vulnerable", vuln)
    bad = [f for f in findings if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")
           and not (f.get("id") in PINNED_CERT and PINNED_CERT[f["id"]] in f.get("finding", ""))]
    h.check(not bad, "no MEDIUM/HIGH/CRITICAL finding beyond the pinned certificate's", bad)
    not_ok = [line.strip() for line in text.splitlines() if "NOT ok" in line]
    allowed = [line for line in not_ok
               if "self signed" in line or "neither CRL nor OCSP URI provided" in line]
    h.check(not_ok == allowed, "every 'NOT ok' is about the pinned self-signed certificate",
            not_ok)
    for f in findings:
        if f.get("severity") == "WARN":
            h.note("testssl.sh warning (not a finding about the hub): %s" % f)

    # The hub served the scan and serves users after it.
    h.check(hub.proc.alive(), "hub still running")
    res = hub.proxy("scanned", "web", "/healthz")
    h.check(res.status == 200, "a user is served through the site after the scan", res)


Harness.main("testssl", main)

#!/usr/bin/env python3
# Attack: a few tokens fill a site's stream slots with requests that never finish.
# SPDX-License-Identifier: MIT
"""Fair share of a site's slots (issue 11 item 1, review of the first fix).

The site serves 256 streams at once. Three attacker tokens try to take them
all, at the hub's default caps:
  - token A: 2 HTTP/2 connections x 128 uploads that send their head and
    never a byte of body (POST /sha256 waits for it forever);
  - tokens B and C: 2 connections x 64 GETs of 256 MiB each that they
    never read.
"Held" means:
  - a victim (a fourth token) gets its 1 MiB download within 5x its
    baseline measured in this run (+2 s for a noisy machine), and its 1 MiB
    upload too;
  - token A's uploads count as stalled once they sent nothing for 5 s: past
    its stalled caps (64 per connection) they are answered 429;
  - token A's next request is refused with 429, and the audit row of that
    refusal says too_many_requests (not "forwarded");
  - /metrics counts the refusals, and the hub logs them;
  - the hub keeps running and serves everyone once the attackers leave.
"""
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Harness  # noqa: E402
from h2stall import Stall, Uploader, make_user_token as make_token  # noqa: E402

SITE = "fair"
ONE_MIB = 1 << 20
BIG = 256 << 20


def main(h):
    hub, site, svc = h.setup(site_name=SITE)
    victim = make_token(hub, "victim")
    a, b, c = (make_token(hub, "attacker-" + n) for n in "abc")

    def get(timeout):
        return hub.proxy(SITE, "web", "/bytes/%d" % ONE_MIB, token=victim, timeout=timeout)

    def put(timeout):
        return hub.proxy(SITE, "web", "/sha256", method="POST", data=b"v" * ONE_MIB,
                         token=victim, timeout=timeout)

    base = up_base = None
    for _ in range(3):
        r = get(30)
        h.check(r.status == 200 and len(r.body) == ONE_MIB, "baseline 1 MiB download", r)
        base = r.elapsed if base is None else min(base, r.elapsed)
        r = put(30)
        h.check(r.status == 200, "baseline 1 MiB upload", r)
        up_base = r.elapsed if up_base is None else min(up_base, r.elapsed)
    limit, up_limit = 5 * base + 2.0, 5 * up_base + 2.0
    h.info("victim baseline: download %.3fs, upload %.3fs" % (base, up_base))

    # Token A: 256 uploads that never send a body (its max_requests_per_token).
    ups = [Uploader(hub.port, a) for _ in range(2)]
    for u in ups:
        u.open("/v1/sites/%s/services/web/sha256" % SITE, 128)
    # Tokens B and C: 128 unread 256 MiB downloads each.
    path = "/v1/sites/%s/services/web/bytes/%d" % (SITE, BIG)
    stalls = [Stall(hub.port, t, path, 64) for t in (b, c) for _ in range(2)]
    for s in stalls:
        s.wait_heads(3)
    time.sleep(1.0)

    r = get(int(limit) + 10)
    h.info("victim's 1 MiB download under attack: %.3fs (baseline %.3fs)" % (r.elapsed, base))
    h.check(r.status == 200 and len(r.body) == ONE_MIB and r.elapsed <= limit,
            "victim's 1 MiB download finishes in %.2fs <= %.2fs while 3 tokens hold 512 "
            "requests" % (r.elapsed, limit), "status=%s bytes=%d" % (r.status, len(r.body or b"")))
    r = put(int(up_limit) + 10)
    h.info("victim's 1 MiB upload under attack: %.3fs (baseline %.3fs)" % (r.elapsed, up_base))
    h.check(r.status == 200 and r.elapsed <= up_limit,
            "victim's 1 MiB upload answered in %.2fs <= %.2fs" % (r.elapsed, up_limit), r)

    # Token A's uploads have sent nothing for more than 5 s: they count as
    # stalled, and those past max_stalled_streams_per_conn (64) get 429.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sum(len(u.heads) for u in ups) < 128:
        for u in ups:
            u._pump(0.2)
    n429 = sum(1 for u in ups for v in u.heads.values() if v == "other")
    h.check(n429 >= 128, "token A's bodiless uploads past its stalled caps are refused (429)",
            "refused=%d answered=%d" % (n429, sum(len(u.heads) for u in ups)))
    # Token A is at its caps: its next request is refused, and audited as
    # refused.
    r = hub.proxy(SITE, "web", "/sha256", method="POST", data=b"x", token=a, timeout=10)
    h.check(r.status == 429 and (r.json() or {}).get("error") == "too_many_requests",
            "token A's next request is refused with 429", r)
    au = hub.curl("/v1/audit?limit=20")
    rows = [x for x in (au.json() or {}).get("entries", []) if x.get("action") == "proxy"
            and x.get("actor") == "attacker-a"] if au.status == 200 else []
    h.check(rows and rows[0].get("result") == "too_many_requests",
            "the audit row of the refusal says too_many_requests",
            json.dumps(rows[:2]) if rows else au)
    m = hub.curl("/metrics")
    n = {k: int(v) for k, v in re.findall(r'^tether_proxy_refused_total\{reason="(\w+)"\} (\d+)$',
                                        m.body.decode(errors="replace"), re.M)}
    h.check(m.status == 200 and n.get("stall_reset", 0) >= 128 and sum(n.values()) >= 129,
            "/metrics counts the refusals and resets", n)
    h.check(hub.proc.wait_log(r"\bproxy_refused\b.*\bkind=\w+\b.*\bsite=fair\b.*"
                              r"\btoken=attacker-a\b", 5, fatal=False) is not None,
            "the refusals are logged with their kind, site and token")

    for u in ups:
        u.close()
    for s in stalls:
        s.close()
    h.check(hub.proc.alive(), "hub still running")
    time.sleep(0.5)
    r = hub.proxy(SITE, "web", "/bytes/%d" % ONE_MIB, token=a, timeout=30)
    h.check(r.status == 200 and len(r.body) == ONE_MIB, "token A is served once it let go", r)


if __name__ == "__main__":
    Harness.main("site_fairness", main)

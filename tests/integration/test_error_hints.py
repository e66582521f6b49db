#!/usr/bin/env python3
# Integration: errors say what to do next: a site's 503 says whether it is pending, never connected, offline since when, disabled or revoked (with the tetherctl command that helps); a service not offered names those offered; tetherctl adds the next step to 404, 401, admin-only, pin and connection failures; the site agent names the command for a refused key. Error codes stay as they were.
# SPDX-License-Identifier: MIT
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, closed_port  # noqa: E402


def refusal(h, r, status, code, parts, what):
    """r is {"error": code, "detail": ...} with status, and the detail holds
    every string of parts."""
    j = r.json() or {}
    d = j.get("detail", "")
    h.check(r.status == status and j.get("error") == code and all(p in d for p in parts),
            "%s: %d %s, detail with %s" % (what, status, code, parts), r)
    return d


def main(h):
    hub, site, svc = h.setup("hint-a")

    # The states of a site without a tunnel, each with its way out.
    hub.site_add("hint-pending")
    refusal(h, hub.proxy("hint-pending", "web", "/healthz"), 503, "site_offline",
            ["\"hint-pending\" has not enrolled yet", "'tetherctl site token hint-pending'"],
            "a registered site that never enrolled")
    never = h.site("hint-never", hub)
    never.enroll(hub.site_add("hint-never"))
    refusal(h, hub.proxy("hint-never", "web", "/healthz"), 503, "site_offline",
            ["is not connected (it has never connected)", "tether-site doctor"],
            "an enrolled site that never connected")
    b = h.site("hint-b", hub)
    b.enroll(hub.site_add("hint-b"))
    b.start({"web": svc.url})
    hub.wait_ready("hint-b")
    b.proc.stop()
    hub.wait_online("hint-b", online=False)
    d = refusal(h, hub.proxy("hint-b", "web", "/healthz"), 503, "site_offline",
                ["is not connected (last seen "], "a site that went away")
    h.check(re.search(r"last seen \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", d),
            "... with the time it was last seen", d)
    r = hub.ctl("site", "disable", "hint-a")
    hub.wait_online("hint-a", online=False)
    refusal(h, hub.proxy("hint-a", "web", "/healthz"), 503, "site_offline",
            ["\"hint-a\" is disabled", "'tetherctl site enable hint-a'"], "a disabled site")
    r = hub.ctl("site", "revoke", "hint-a")
    h.check(r.rc == 0, "revoke hint-a", r)
    refusal(h, hub.proxy("hint-a", "web", "/healthz"), 503, "site_offline",
            ["\"hint-a\" was revoked", "'tetherctl site token hint-a'"],
            "a revoked site says it was revoked, not merely not connected")
    # The revoked site's agent, refused at each try, says what to do.
    h.check(site.proc.wait_log(r"refused this site's key.*'tetherctl site show hint-a'.*"
                               r"'tetherctl site token hint-a'", 20, fatal=False),
            "the revoked site's agent names 'tetherctl site show' and 'site token'")

    # A service the connected site does not offer: the ones it does.
    c = h.site("hint-c", hub)
    c.enroll(hub.site_add("hint-c"))
    c.start({"web": svc.url, "db": "tcp://127.0.0.1:%d" % closed_port()})
    hub.wait_ready("hint-c")
    refusal(h, hub.proxy("hint-c", "wbe", "/healthz"), 404, "not_found",
            ["does not offer service \"wbe\"", "\"db\"", "\"web\""],
            "a service not offered names the offered ones")

    # tetherctl: the next step after the hub's refusals.
    seen = []
    r = hub.ctl("site", "show", "nosuch")
    h.check(r.rc == 3 and "no such site (HTTP 404); 'tetherctl site list' shows the sites"
            in r.stderr, "site show of an unknown site: exit 3, points at site list", r)
    seen.append(r)
    r = hub.ctl("token", "revoke", "nosuch")
    h.check(r.rc == 3 and "'tetherctl token list'" in r.stderr,
            "token revoke of an unknown token points at token list", r)
    seen.append(r)
    r = hub.ctl("site", "list", token="tth_" + "A" * 43)
    h.check(r.rc == 4 and "(HTTP 401)" in r.stderr and "unknown, revoked or expired" in r.stderr
            and "tetherctl token create" in r.stderr, "a bad token: exit 4 and what to do", r)
    seen.append(r)
    user = hub.token_create("hint-user", "--role", "user", "--sites", "*")
    r = hub.ctl("site", "add", "x1", token=user)
    h.check(r.rc == 4 and "admin only (HTTP 403); this needs an admin token" in r.stderr,
            "an admin command with a user token says it needs an admin token", r)
    seen.append(r)
    r = hub.ctl("site", "list", "--pin", "sha256//" + "A" * 43 + "=")
    h.check(r.rc == 6 and "does not match the pinned key" in r.stderr
            and "hub_pin =" in r.stderr, "a wrong pin: exit 6, says where the pin goes", r)
    seen.append(r)
    r = h.run([h.bin("tetherctl"), "--config", hub.ctl_conf, "--hub",
               "https://127.0.0.1:%d" % closed_port(), "site", "list"])
    h.check(r.rc == 6 and "is tether-hub running there" in r.stderr,
            "nothing at the address: exit 6, asks whether the hub runs there", r)
    seen.append(r)
    h.check(all(len(x.stderr.strip().splitlines()) == 1 and not x.stdout for x in seen),
            "each of these errors is one line on stderr, nothing on stdout", seen)


Harness.main("test_error_hints", main)

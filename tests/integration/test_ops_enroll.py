#!/usr/bin/env python3
# Integration: enrollment tokens listed without secrets, cancelled, reissued; used, expired and cancelled tokens refused; one winner per token under a race.
# SPDX-License-Identifier: MIT
import base64
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal, _pdeathsig  # noqa: E402


def token_secret(tok):
    """The base64url secret inside a "tether1." enrollment token."""
    raw = tok.strip()[len("tether1."):]
    raw += "=" * (-len(raw) % 4)
    return json.loads(base64.urlsafe_b64decode(raw))["secret"]


def enroll_direct(hub, site, tok):
    """POST /v1/enroll with a fresh, unused pin (no site key needed)."""
    pin = "sha256//" + base64.b64encode(os.urandom(32)).decode()
    return hub.api("POST", "/v1/enroll", {"site": site, "secret": token_secret(tok), "pin": pin},
                   token=None)


def enrollments(hub, *args):
    return hub.ctl_json("enroll", "list", *args).get("enrollments", [])


def main(h):
    hub = h.hub()
    hub.init()
    hub.start(test_clock=True)

    # --- listing shows no secret; cancel ------------------------------------
    tok_c = hub.site_add("en-cancel")
    r = hub.ctl("enroll", "list", "--json")
    lst = r.json().get("enrollments", [])
    mine = [e for e in lst if e.get("site") == "en-cancel"]
    h.check(len(mine) == 1 and mine[0].get("status") == "pending", "enroll list shows the token",
            lst)
    secret = token_secret(tok_c)
    h.check(secret not in r.stdout and tok_c not in r.stdout and "secret" not in r.stdout,
            "enroll list --json holds no secret")
    r = hub.ctl("enroll", "list")
    h.check(r.rc == 0 and "en-cancel" in r.stdout and secret not in r.stdout,
            "enroll list table holds no secret", r)
    eid = mine[0]["id"]
    r = hub.ctl("enroll", "cancel", str(eid))
    h.check(r.rc == 0 and "cancelled" in r.stdout, "enroll cancel", r)
    h.check(not [e for e in enrollments(hub) if e.get("id") == eid],
            "a cancelled token leaves the default list")
    st = [e.get("status") for e in enrollments(hub, "--all") if e.get("id") == eid]
    h.check(st == ["cancelled"], "enroll list --all shows it cancelled", st)
    site = h.site("en-cancel", hub)
    r = site.enroll(tok_c, check=False)
    h.check(r.rc != 0 and "cancelled" in r.stderr and not os.path.exists(site.conf_path),
            "tether-site enroll with a cancelled token is refused, saying so", r)
    r = hub.ctl("enroll", "cancel", "999999")
    h.check(r.rc == 3, "cancelling an unknown id: exit 3", r)

    # --- used ---------------------------------------------------------------
    tok_u = hub.site_add("en-used")
    h.site("en-used", hub).enroll(tok_u)
    r = h.site("en-used", hub, dirname="site-en-used-again").enroll(tok_u, check=False)
    h.check(r.rc != 0 and "already used" in r.stderr, "a used token is refused, saying so", r)
    h.check("tetherctl site token en-used" in r.stderr,
            "... and says what to do next: tetherctl site token NAME", r)
    uid = [e["id"] for e in enrollments(hub, "--all", "--site", "en-used")]
    r = hub.ctl("enroll", "cancel", str(uid[0]) if uid else "1")
    h.check(r.rc == 5, "cancelling a used token: exit 5 (conflict)", r)

    # --- expired --------------------------------------------------------------
    # Issued for 60 s by the hub while its clock reads two minutes ago: by the
    # real clock (the site checks with its own) and the hub's, it ran out a
    # minute ago.
    hub.clock_set(-120)
    tok_e = hub.site_add("en-expired", "--ttl", "60")
    hub.clock_set(0)
    r = h.site("en-expired", hub).enroll(tok_e, check=False)
    h.check(r.rc != 0 and "expired" in r.stderr and "tetherctl site token en-expired" in r.stderr,
            "tether-site refuses an expired token, naming the command for a new one", r)
    r = enroll_direct(hub, "en-expired", tok_e)
    h.check(r.status == 403 and (r.json() or {}).get("error") == "forbidden"
            and (r.json() or {}).get("detail", "").startswith("enrollment token expired: ")
            and "'tetherctl site token en-expired'" in (r.json() or {}).get("detail", ""),
            "the hub refuses an expired token with a clear message and the next step", r)
    r = enroll_direct(hub, "en-expired", "tether1." + base64.urlsafe_b64encode(json.dumps(
        {"secret": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")}).encode())
        .decode())
    h.check(r.status == 401 and (r.json() or {}).get("error") == "unauthorized"
            and (r.json() or {}).get("detail", "").startswith("unknown enrollment token"),
            "an unknown secret gets 401", r)

    # --- a new token cancels the earlier unused one ----------------------------
    tok_1 = hub.site_add("en-reissue")
    tok_2 = hub.ctl("site", "token", "en-reissue").stdout.strip()
    h.check(tok_2.startswith("tether1.") and tok_2 != tok_1, "site token issues a new token")
    r = enroll_direct(hub, "en-reissue", tok_1)
    h.check(r.status == 403 and "cancelled" in (r.json() or {}).get("detail", ""),
            "the earlier token stopped working", r)
    h.check(h.site("en-reissue", hub).enroll(tok_2, check=False).rc == 0, "the new one works")
    r = hub.ctl("site", "token", "en-nope")
    h.check(r.rc == 3, "site token for an unknown site: exit 3", r)

    # --- two sites enroll with one token at the same moment -----------------
    for rnd in range(3):
        name = "en-race-%d" % rnd
        tok = hub.site_add(name)
        dirs = [h.site(name, hub, dirname="site-%s-%d" % (name, i)).dir for i in range(2)]
        procs = [subprocess.Popen([h.bin("tether-site"), "enroll", "--state", d, "-"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=h.env, preexec_fn=_pdeathsig)
                 for d in dirs]
        # Both have the token before either is let go.
        for p in procs:
            p.stdin.write((tok + "\n").encode())
            p.stdin.flush()
        for p in procs:
            p.stdin.close()
        res = [(p.wait(60), p.stderr.read().decode()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        wins = [rc for rc, _ in res if rc == 0]
        h.check(len(wins) == 1, "round %d: exactly one of two concurrent enrolls wins" % rnd, res)
        losers = [err for rc, err in res if rc != 0]
        h.check(len(losers) == 1 and "already used" in losers[0],
                "round %d: the loser is told the token was used" % rnd, losers)
        winner_dir = dirs[[rc for rc, _ in res].index(0)] if wins else None
        h.check(winner_dir and os.path.exists(os.path.join(winner_dir, "site.conf")) and
                sum(os.path.exists(os.path.join(d, "site.conf")) for d in dirs) == 1,
                "round %d: only the winner wrote site.conf" % rnd)
        s = hub.site_show(name)
        h.check(s.get("state") == "active" and s.get("pin"), "round %d: site active" % rnd, s)

    # --- audit --------------------------------------------------------------
    rows = hub.ctl_json("audit", "--limit", "500").get("entries", [])
    enr = [e for e in rows if e.get("action") == "site.enroll"]
    race = [e for e in enr if e.get("target") == "en-race-0"]
    h.check(sorted(e.get("result") for e in race) == ["forbidden", "ok"] and
            all(e.get("actor") == "site:en-race-0" for e in race),
            "the race left one ok and one forbidden audit row", race)
    h.check([e for e in enr if e.get("target") == "en-expired" and
             e.get("detail", "").startswith("enrollment token expired")],
            "expired attempt audited")
    h.check([e for e in rows if e.get("action") == "enroll.cancel" and
             e.get("target") == "en-cancel" and e.get("result") == "ok"], "cancel audited")
    h.check([e for e in rows if e.get("action") == "site.token" and
             e.get("target") == "en-reissue"], "reissue audited")
    page = hub.ctl_json("audit", "--limit", "3")
    older = hub.ctl_json("audit", "--limit", "3", "--before", str(page.get("next_before")))
    ids = [e["id"] for e in page.get("entries", [])] + [e["id"] for e in older.get("entries",
                                                                                  [])]
    h.check(len(ids) == 6 and ids == sorted(ids, reverse=True) and len(set(ids)) == 6,
            "audit pages newest first without overlap", ids)


Harness.main("test_ops_enroll", main)

#!/usr/bin/env python3
# Integration: HTTP/2 request bodies give their flow-control window back, whatever handles them.
# SPDX-License-Identifier: MIT
"""The hub's HTTP/2 front end credits every request-body byte once (issue 11
item 10). A and B fail on a hub that forgets to: the client runs out of
window and the request hangs until curl's timeout.
  A. 20 API bodies of ~1 MB on one connection (20 MB, more than the 16 MiB
     connection window), each answered 200.
  B. One 3 MiB API body (stream window 1 MiB) with api_body_max = 4 MiB.
  C. 20 uploads of ~1 MB on one connection to a service that answers before
     reading them (the proxy path: its handler holds body bytes; this part
     guards it, it also passed before).
  D. uploads reset while the hub and the site still hold their bytes give
     the window back, on the user's connection and on the tunnel.
  E. an upload alone on its connection, held back by the socket (its window
     widened) to a service that takes nothing, still lets a request behind it
     through once the hold's 0.5 s are up.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from h2stall import Uploader  # noqa: E402

SITE = "credit-a"
N = 20
PIECE = 1000 * 1000


def padded(obj_json, size):
    """A JSON object text of exactly size bytes (whitespace padding)."""
    return obj_json[:-1] + " " * (size - len(obj_json)) + obj_json[-1:]


def multi(h, hub, urls, method, body_path, timeout):
    """One curl, one HTTP/2 connection, the same body to each URL in turn.
    Returns ([status...], connections opened)."""
    argv = ["curl", "-q", "-sS", "-k", "--http2", "--pinnedpubkey", hub.pin,
            "-H", "Authorization: Bearer %s" % hub.token, "-H", "Content-Type: application/json",
            "-X", method, "--data-binary", "@" + body_path, "--max-time", str(timeout),
            "-w", "%{http_code} %{http_version} %{num_connects}\\n"]
    for u in urls:
        argv += ["-o", "/dev/null", u]
    r = h.run(argv, timeout=timeout + 15)
    codes, conns = [], 0
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            codes.append((parts[0], parts[1]))
            conns += int(parts[2])
    return codes, conns, r


def main(h):
    conf = h.path("extra.conf")
    with open(conf, "w") as f:
        f.write("api_body_max = %d\n" % (4 << 20))
    # A service that never accepts: its listen queue is full, so the site's
    # connects hang and the uploads sent to it stay where they are.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    filler = socket.create_connection(hole.getsockname(), timeout=5)
    svc = h.service("svc-" + SITE, site_name=SITE)
    hub, site, _ = h.setup(SITE, hub_args=["--config", conf],
                           services={"web": svc.url,
                                     "hole": "http://127.0.0.1:%d" % hole.getsockname()[1]})

    body = h.path("patch.json")
    with open(body, "w") as f:
        f.write(padded('{"state":"active"}', PIECE))
    url = hub.url + "/v1/sites/%s" % SITE
    codes, conns, r = multi(h, hub, [url] * N, "PATCH", body, 30)
    h.check(codes == [("200", "2")] * N and conns == 1,
            "A: %d API bodies of %d bytes on one HTTP/2 connection all answered 200" % (N, PIECE),
            "codes=%r connections=%d rc=%d %s" % (codes, conns, r.rc, r.stderr[-300:]))

    big = h.path("big.json")
    with open(big, "w") as f:
        f.write(padded('{"state":"active"}', 3 << 20))
    r = hub.curl("/v1/sites/%s" % SITE, method="PATCH", data_file=big, http="2", timeout=20,
                 headers={"Content-Type": "application/json"})
    h.check(r.status == 200 and r.version == "2",
            "B: a 3 MiB HTTP/2 API body (api_body_max 4 MiB) is answered 200", r)

    up = h.path("upload.bin")
    with open(up, "wb") as f:
        f.write(b"u" * PIECE)
    purl = hub.url + "/v1/sites/%s/services/web/healthz" % SITE
    codes, conns, r = multi(h, hub, [purl] * N, "POST", up, 30)
    h.check(len(codes) == N and all(v == "2" for _, v in codes) and conns == 1,
            "C: %d uploads the service did not read all answered on one connection" % N,
            "codes=%r connections=%d rc=%d %s" % (codes, conns, r.rc, r.stderr[-300:]))

    # D: uploads cut short while the hub (1 MiB per stream) and the site
    # (1 MiB per stream, queued for the service) still hold their bytes.
    # Those bytes must come back to the user connection's window and to the
    # tunnel's: 5 connections x 16 streams hold 80 MiB, more than either.
    hole_path = "/v1/sites/%s/services/hole/upload" % SITE
    ok_after, held = 0, []
    for _ in range(5):
        u = Uploader(hub.port, hub.token)
        sids = u.open(hole_path, 16)
        sent = u.push(sids, 4 << 20, 0.5)
        held.append(sum(sent.values()))
        u.reset(sids)
        (sid,) = u.open("/v1/sites/%s/services/web/sha256" % SITE, 1)
        done = u.push([sid], 256 << 10, 10, end=True)
        if done[sid] == 256 << 10 and u.wait_head(sid, 10) == "200":
            ok_after += 1
        u.close()
    h.info("D: bytes sent before the uploads stalled, per connection: %s" % held)
    h.check(all(n >= 16 << 20 for n in held),
            "D: each connection's 16 uploads stalled only after 16 MiB or more", held)
    h.check(ok_after == 5, "D: after resetting its stuck uploads, each connection uploads "
            "256 KiB and gets its answer", "%d of 5" % ok_after)
    r = hub.proxy(SITE, "web", "/sha256", method="POST", data=b"y" * (1 << 20), http="2",
                  timeout=20)
    h.check(r.status == 200 and (r.json() or {}).get("bytes") == 1 << 20,
            "D: a new connection's 1 MiB upload through the same tunnel is answered", r)
    # E: an upload alone on its connection is held back by the socket (its
    # window widened to the connection's, reading paused) so that a client
    # out of window does not spin; the hold lasts 0.5 s at most, then the
    # window alone bounds it, and a request started behind it is answered.
    u = Uploader(hub.port, hub.token)
    (lone,) = u.open(hole_path, 1)
    sent = u.push([lone], 8 << 20, 3)
    h.check(sent[lone] == 8 << 20,
            "E: a lone upload to a service that takes nothing may send 8 MiB (its window "
            "widened, the hub reading again after the hold)", sent)
    (sid,) = u.open("/v1/sites/%s/services/web/sha256" % SITE, 1)
    t0 = time.monotonic()
    done = u.push([sid], 256 << 10, 10, end=True)
    head = u.wait_head(sid, 10)
    h.check(done[sid] == 256 << 10 and head == "200",
            "E: a request behind the stuck lone upload on its connection is answered",
            "%r %r after %.1f s" % (done, head, time.monotonic() - t0))
    u.reset([lone])
    u.close()
    filler.close()
    hole.close()

    r = hub.curl("/v1/sites", http="2")
    h.check(r.status == 200, "the hub still answers", r)


if __name__ == "__main__":
    Harness.main("h2_body_credit", main)

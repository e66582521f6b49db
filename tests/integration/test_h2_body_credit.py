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
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402

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
    hub, site, svc = h.setup(SITE, hub_args=["--config", conf])

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

    r = hub.curl("/v1/sites", http="2")
    h.check(r.status == 200, "the hub still answers", r)


if __name__ == "__main__":
    Harness.main("h2_body_credit", main)

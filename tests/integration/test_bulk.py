#!/usr/bin/env python3
# Integration: 64 MiB up and down through the tunnel, byte for byte, over HTTP/1.1 and HTTP/2.
# SPDX-License-Identifier: MIT
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, load_sample_module  # noqa: E402

SITE = "bulk-a"
SIZE = 64 * 1024 * 1024


def sha256_file(path):
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
    return h.hexdigest(), n


def main(h):
    sample = load_sample_module()
    hub, site, svc = h.setup(SITE)

    # Upload data: not the /bytes pattern, so a proxy that mixed up streams
    # could not produce the right hash by accident.
    up = h.path("upload.bin")
    hu = hashlib.sha256()
    with open(up, "wb") as f:
        seed = hashlib.sha256(b"tether-bulk").digest()
        block = seed * 2048  # 64 KiB
        for i in range(SIZE // len(block)):
            chunk = hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:]
            f.write(chunk)
            hu.update(chunk)
    up_sha = hu.hexdigest()
    down_sha = sample.pattern_sha256(SIZE)

    for proto in ("1.1", "2"):
        tag = "HTTP/%s" % proto
        # Upload with Content-Length.
        r = hub.proxy(SITE, "web", "/sha256", http=proto, method="POST", data_file=up,
                      headers={"Content-Type": "application/octet-stream"}, timeout=120)
        j = r.json() or {}
        h.check(r.status == 200 and j.get("bytes") == SIZE and j.get("sha256") == up_sha,
                "%s: 64 MiB POST (Content-Length) arrives byte for byte" % tag, r)
        if r.status == 200:
            h.info("%s upload %.1f MB/s" % (tag, SIZE / 1e6 / max(r.elapsed, 1e-3)))
        # Upload streamed from stdin without a length (chunked on HTTP/1.1,
        # END_STREAM-delimited on HTTP/2).
        with open(up, "rb") as f:
            data = f.read()
        r = hub.proxy(SITE, "web", "/sha256", http=proto, method="PUT", upload_stdin=data,
                      headers={"Content-Type": "application/octet-stream"}, timeout=120)
        del data
        j = r.json() or {}
        h.check(r.status == 200 and j.get("bytes") == SIZE and j.get("sha256") == up_sha
                and j.get("method") == "PUT",
                "%s: 64 MiB PUT of unknown length arrives byte for byte" % tag, r)

        # Download.
        out = h.path("down-%s.bin" % proto)
        r = h.curl(hub.url + "/v1/sites/%s/services/web/bytes/%d" % (SITE, SIZE), http=proto,
                   pin=hub.pin, token=hub.token, out_file=out, timeout=120)
        got_sha, got_n = sha256_file(out) if os.path.exists(out) else ("", 0)
        h.check(r.status == 200 and r.rc == 0, "%s: 64 MiB GET completes" % tag, r)
        h.check(got_n == SIZE, "%s: downloaded length is %d" % (tag, SIZE), got_n)
        h.check(got_sha == down_sha, "%s: downloaded bytes match the pattern" % tag, got_sha)
        if r.status == 200:
            h.info("%s download %.1f MB/s" % (tag, SIZE / 1e6 / max(r.elapsed, 1e-3)))
        if os.path.exists(out):
            os.unlink(out)

    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "tunnel still serves after the bulk transfers", r)


if __name__ == "__main__":
    Harness.main("bulk", main)

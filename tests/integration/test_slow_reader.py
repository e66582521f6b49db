#!/usr/bin/env python3
# Integration: slow readers of a 256 MiB body leave hub (and site) RSS bounded.
# SPDX-License-Identifier: MIT
import hashlib
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Fatal, Harness, load_sample_module, tls_connect  # noqa: E402

SITE = "slow-a"
SIZE = 256 * 1024 * 1024
LIMIT_KIB = 32 * 1024
SLOW_S = 15.0
PAUSE_S = 5.0
STEP = 64 * 1024
STEP_SLEEP = 0.010  # 64 KiB per 10 ms: ~6.5 MB/s, about 100 MB in the slow phase
H2_RATE = 20 * 1024 * 1024  # curl --limit-rate for the HTTP/2 phase: ~13 s for 256 MiB


class Sampler(threading.Thread):
    def __init__(self, procs):
        super().__init__(daemon=True)
        self.procs = procs
        self.samples = {p.name: [] for p in procs}
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            for p in self.procs:
                v = p.rss_kib()
                if v is not None:
                    self.samples[p.name].append((time.monotonic(), v))
            self.stop_ev.wait(0.1)

    def peak(self, name, since=0.0):
        vals = [v for t, v in self.samples[name] if t >= since]
        return max(vals) if vals else None


class Http1Response:
    """Minimal HTTP/1.1 response reader over a socket: head, then the body
    through Content-Length or chunked framing, with bounded reads."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False
        head = self._read_until(b"\r\n\r\n", 65536)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise Fatal("bad status line %r" % lines[0])
        self.status = int(parts[1])
        self.headers = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self.left = None if self.chunked else int(self.headers.get("content-length", "-1"))
        self.chunk_left = 0
        self.done = False

    def _fill(self):
        b = self.sock.recv(STEP)
        if not b:
            self.eof = True
        self.buf += b
        return len(b)

    def _read_until(self, sep, limit):
        while sep not in self.buf:
            if len(self.buf) > limit:
                raise Fatal("header too long")
            if not self._fill():
                raise Fatal("connection closed in the head")
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _take(self, n):
        if not self.buf and not self.eof:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self, n):
        """Up to n body bytes (b"" at the end)."""
        if self.done:
            return b""
        if not self.chunked:
            if self.left is not None and self.left >= 0:
                if self.left == 0:
                    self.done = True
                    return b""
                out = self._take(min(n, self.left))
                if not out:
                    raise Fatal("connection closed with %d body bytes missing" % self.left)
                self.left -= len(out)
                return out
            out = self._take(n)
            if not out:
                self.done = True
            return out
        if self.chunk_left == 0:
            line = self._read_until(b"\r\n", 1024)
            size = int(line.split(b";")[0].strip() or b"x", 16)
            if size == 0:
                self.done = True
                return b""
            self.chunk_left = size
        out = self._take(min(n, self.chunk_left))
        if not out:
            raise Fatal("connection closed inside a chunk")
        self.chunk_left -= len(out)
        if self.chunk_left == 0:
            self._read_until(b"\r\n", 2)
        return out


def wait_rss_settled(h, procs, timeout=10.0, still=3, slack_kib=256):
    """Waits until the RSS of every process stays within slack_kib over
    `still` samples 100 ms apart: the baseline is taken once the previous
    transfer's memory has settled, not after a guessed delay. Returns the
    settled RSS values (the last readings on timeout, noted)."""
    hist = []
    deadline = time.monotonic() + timeout
    while True:
        hist.append([p.rss_kib() or 0 for p in procs])
        last = hist[-still:]
        if len(last) == still and all(max(col) - min(col) <= slack_kib for col in zip(*last)):
            return hist[-1]
        if time.monotonic() >= deadline:
            h.note("RSS not settled within %.0fs: %r" % (timeout, last))
            return hist[-1]
        time.sleep(0.1)


def main(h):
    sample = load_sample_module()
    hub, site, svc = h.setup(SITE)
    want_sha = sample.pattern_sha256(SIZE)
    crt = os.path.join(hub.dir, "hub.crt")

    # Warm up both processes' allocators with a moderate transfer first.
    r = hub.proxy(SITE, "web", "/bytes/%d" % (8 << 20))
    h.check(r.status == 200 and len(r.body) == 8 << 20, "warm-up 8 MiB download", r.status)
    base_hub, base_site = wait_rss_settled(h, [hub.proc, site.proc])
    h.info("baseline RSS: hub %d KiB, site %d KiB" % (base_hub, base_site))

    sampler = Sampler([hub.proc, site.proc])
    sampler.start()
    s = tls_connect(hub.port, alpn=("http/1.1",), server_cert_pem=crt, timeout=30)
    try:
        s.sendall(("GET /v1/sites/%s/services/web/bytes/%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Authorization: Bearer %s\r\nUser-Agent: tether-slow-reader\r\n\r\n"
                   % (SITE, SIZE, hub.port, hub.token)).encode())
        resp = Http1Response(s)
        h.check(resp.status == 200, "256 MiB GET answered 200", resp.status)
        if resp.status != 200:
            return
        cl = resp.headers.get("content-length")
        if cl is not None:
            h.check(cl == str(SIZE), "Content-Length is %d" % SIZE, cl)
        digest = hashlib.sha256()
        total = 0

        # Slow phase.
        t0 = time.monotonic()
        while time.monotonic() - t0 < SLOW_S:
            got = 0
            while got < STEP:
                b = resp.read(STEP - got)
                if not b:
                    break
                digest.update(b)
                got += len(b)
            total += got
            if not got:
                break
            time.sleep(STEP_SLEEP)
        slow_total = total
        h.info("slow phase: %.1f MB in %.1fs" % (slow_total / 1e6, time.monotonic() - t0))
        h.check(slow_total < SIZE, "the slow reader had not finished when it stopped reading",
                slow_total)

        # Stop reading; another request through the same tunnel must still
        # be served promptly (a slow reader stalls only its own stream).
        t_pause = time.monotonic()
        time.sleep(PAUSE_S / 2)
        r = hub.proxy(SITE, "web", "/echo?during=pause", timeout=10)
        h.check(r.status == 200 and r.elapsed < 3.0, "another request is served while the slow "
                "reader stalls (%.2fs)" % r.elapsed, r)
        time.sleep(PAUSE_S / 2)
        pause_peak = sampler.peak(hub.proc.name, since=t_pause)

        # Read the rest at full speed.
        while True:
            b = resp.read(1 << 20)
            if not b:
                break
            digest.update(b)
            total += len(b)
    finally:
        s.close()
        sampler.stop_ev.set()
        sampler.join(5)

    h.check(total == SIZE, "read the whole body: %d bytes" % SIZE, total)
    h.check(digest.hexdigest() == want_sha, "body bytes match the pattern")
    peak_hub = sampler.peak(hub.proc.name)
    peak_site = sampler.peak(site.proc.name)
    n = len(sampler.samples[hub.proc.name])
    h.check(n >= 100, "sampled hub RSS every 100 ms (%d samples)" % n)
    if peak_hub is not None:
        growth = peak_hub - base_hub
        h.info("hub RSS peak %d KiB (+%d KiB), during the pause peak %s KiB" % (
            peak_hub, growth, pause_peak))
        h.check(growth < LIMIT_KIB, "hub RSS growth under 32 MiB (+%.1f MiB)" % (growth / 1024.0))
    if peak_site is not None:
        growth = peak_site - base_site
        h.info("site RSS peak %d KiB (+%d KiB)" % (peak_site, growth))
        h.check(growth < LIMIT_KIB, "site RSS growth under 32 MiB (+%.1f MiB)" % (growth / 1024.0))

    # HTTP/2 user whose client reads at a capped rate: the hub must hold the
    # stream by flow control, not by buffering.
    base_hub, base_site = wait_rss_settled(h, [hub.proc, site.proc])
    sampler = Sampler([hub.proc, site.proc])
    sampler.start()
    try:
        r = hub.proxy(SITE, "web", "/bytes/%d" % SIZE, http="2", out_file="/dev/null", timeout=90,
                      extra=["--limit-rate", "%d" % H2_RATE])
    finally:
        sampler.stop_ev.set()
        sampler.join(5)
    h.check(r.status == 200 and r.version == "2" and r.size == SIZE,
            "HTTP/2 rate-limited reader got all %d bytes" % SIZE, r)
    for p, base in ((hub.proc, base_hub), (site.proc, base_site)):
        peak = sampler.peak(p.name)
        if peak is not None and base is not None:
            h.info("HTTP/2 phase: %s RSS peak %d KiB (+%d KiB)" % (p.name, peak, peak - base))
            h.check(peak - base < LIMIT_KIB, "HTTP/2 phase: %s RSS growth under 32 MiB (+%.1f MiB)"
                    % (p.name, (peak - base) / 1024.0))

    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "tunnel still serves afterwards", r)


if __name__ == "__main__":
    Harness.main("slow_reader", main)

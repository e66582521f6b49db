#!/usr/bin/env python3
# Integration: a response buffer that cannot grow resets its stream instead of losing bytes.
# SPDX-License-Identifier: MIT
"""Issue 11 item 11. A small LD_PRELOAD shim (built here with cc) makes
malloc fail for one exact size while a trigger file exists:
  A. in the hub, 1 MiB: the size a stalled HTTP/2 user's response buffer
     grows to last; the hub must reset that stream (RST_STREAM), not drop
     the bytes and go on;
  B. in the site, 256 KiB: the size its per-stream response buffer grows to
     before the service is paused; the site must reset the stream, and the
     hub pass the reset on to the user.
"Held" also means: the hub and the site keep running and serve the next
request whole. Skips (77) on a sanitizer build, whose allocator a preloaded
malloc cannot replace, and without a C compiler.
"""
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Fatal, Harness, Proc, Skip  # noqa: E402
from h2stall import Stall  # noqa: E402

SITE = "failbuf-a"

SHIM = r"""
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
extern void *__libc_malloc(size_t);
void *malloc(size_t n)
{
    static size_t want;
    static const char *arm;
    static int init;
    if (!init) {
        const char *s = getenv("TETHER_FAIL_MALLOC_SIZE");
        want = s ? strtoul(s, NULL, 10) : 0;
        arm = getenv("TETHER_FAIL_MALLOC_ARM");
        init = 1;
    }
    if (want != 0 && n == want && arm != NULL && access(arm, F_OK) == 0) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(n);
}
"""


def build_shim(h):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Skip("no C compiler for the malloc shim")
    src, so = h.path("failmalloc.c"), h.path("failmalloc.so")
    with open(src, "w") as f:
        f.write(SHIM)
    r = h.run([cc, "-shared", "-fPIC", "-O2", "-o", so, src])
    if r.rc != 0:
        raise Fatal("cannot build the malloc shim: %r" % r)
    return so


def sanitized(path):
    p = subprocess.run(["nm", "-D", path], capture_output=True, timeout=30)
    if b"__asan_init" in p.stdout or b"__ubsan_handle" in p.stdout:
        return True
    p = subprocess.run(["nm", path], capture_output=True, timeout=30)
    return b"__asan_init" in p.stdout or b"__ubsan_handle" in p.stdout


def main(h):
    if sanitized(h.bin("tether-hub")):
        raise Skip("sanitizer build: a preloaded malloc cannot stand in for its allocator")
    so = build_shim(h)
    arm_hub, arm_site = h.path("arm-hub"), h.path("arm-site")

    hub = h.hub()
    hub.init()
    env = dict(h.env, LD_PRELOAD=so, TETHER_FAIL_MALLOC_SIZE=str(1 << 20),
               TETHER_FAIL_MALLOC_ARM=arm_hub)
    hub.proc = Proc(h, "hub", [h.bin("tether-hub"), "run", "--state", hub.dir, "--listen",
                               hub.addr], env=env, daemon=True)
    hub.proc.wait_log(r"\blistening\b", 15)
    svc = h.service("svc-" + SITE, site_name=SITE)
    site = h.site(SITE, hub)
    site.enroll(hub.site_add(SITE))
    senv = dict(h.env, LD_PRELOAD=so, TETHER_FAIL_MALLOC_SIZE=str(256 << 10),
                TETHER_FAIL_MALLOC_ARM=arm_site)
    site.proc = Proc(h, "site-" + SITE, [h.bin("tether-site"), "run", "--state", site.dir,
                                         "--service", "web=%s" % svc.url], env=senv, daemon=True)
    if hub.wait_ready(SITE, 15) is None:
        raise Fatal("site not ready")
    path = "/v1/sites/%s/services/web/bytes/%d" % (SITE, 64 << 20)

    def whole():
        r = hub.proxy(SITE, "web", "/bytes/%d" % (4 << 20), http="2", timeout=30)
        return r.status == 200 and r.size == 4 << 20

    for part, arm, who in (("A", arm_hub, "hub"), ("B", arm_site, "site")):
        open(arm, "w").close()
        c = Stall(hub.port, hub.token, path, 1)
        ok, _ = c.wait_heads(20)
        n = c.wait_resets(1, 20)
        h.check(ok == 1 and n == 1, "%s: the %s cannot buffer a stalled stream's response: the "
                "user gets the 200 head, then a stream reset" % (part, who),
                "heads=%d resets=%d" % (ok, n))
        c.close()
        os.unlink(arm)
        time.sleep(0.2)
        h.check(hub.proc.alive() and site.proc.alive(), "%s: hub and site keep running" % part)
        h.check(whole(), "%s: the next 4 MiB download through the same tunnel is whole" % part)


if __name__ == "__main__":
    Harness.main("buf_append_failure", main)

#!/usr/bin/env python3
# Integration: the hub's disk fills while sites connect and queries run; reads go on, writes get 503, nothing is lost or corrupted, and it recovers by itself.
# SPDX-License-Identifier: MIT
"""The hub's state directory is a small tmpfs mounted in a private mount
namespace (the test re-executes itself under `unshare -m`), so the full disk
is a real ENOSPC from the kernel, for hub.db and its -wal and -shm files.

"Held" means, while the disk is full:
- reads answer 200 (site list, a stored query, proxying to a site);
- writes (add a site, submit a query) answer 503 `storage_unavailable`;
- a site whose agent connects gets its tunnel and serves requests;
- a query that was answered 201 before the disk filled and whose result
  comes back while it is full keeps its result (in memory) and stores it
  once space returns;
and afterwards, with no restart: writes work again, `PRAGMA integrity_check`
is ok, every query answered 201 is in the database.
Needs root and unshare(1); skipped (77) without them. SQLite only: on
PostgreSQL (TETHER_TEST_DB=pg) the registry is on the server's disk, not in
the hub's state directory; skipped (77).
"""
import errno
import os
import shutil
import subprocess
import sys

NS_ENV = "TETHER_DISK_FULL_NS"

if os.environ.get("TETHER_TEST_DB") == "pg":
    print("SKIP test_disk_full: SQLite only: fills the disk under STATE/hub.db; on PostgreSQL "
          "the registry is on the server's disk")
    sys.exit(77)
if os.environ.get(NS_ENV) != "1":
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("SKIP test_disk_full: needs root and unshare(1) for a private tmpfs")
        sys.exit(77)
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        print("SKIP test_disk_full: unshare -m not permitted here: %s" % probe.stderr.decode())
        sys.exit(77)
    os.environ[NS_ENV] = "1"
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                          os.path.abspath(__file__)] + sys.argv[1:])

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Fatal, Harness  # noqa: E402
from queryhelp import (add_site, by_site, get_query, sql, start_site, submit, submit_ok,  # noqa: E402
                       tally, wait_complete)

TMPFS_SIZE = "6m"


def fill(path):
    """Writes zeros into path until the file system says ENOSPC; returns bytes written."""
    n = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return n
                chunk = chunk[:len(chunk) // 2]


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def main(h):
    hub = h.hub()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % TMPFS_SIZE, "tmpfs",
                        hub.dir], capture_output=True)
    if r.returncode != 0:
        raise Fatal("mount tmpfs on %s: %s" % (hub.dir, r.stderr.decode()))
    try:
        run(h, hub)
    finally:
        if hub.proc is not None and hub.proc.alive():
            hub.proc.stop(timeout=15)
        subprocess.run(["umount", "-l", hub.dir])


def run(h, hub):
    hub.init()
    hub.start()
    a, svc_a = add_site(h, hub, "clinic-a")
    b, svc_b = add_site(h, hub, "clinic-b", start=False)
    committed = []
    j0 = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts", "path": "/tally/before"})
    committed.append(j0["id"])
    q0 = wait_complete(hub, j0["id"], 20)
    h.check(q0 and q0["status"] == "complete", "a query before the disk fills completes", q0)
    # In flight while the disk fills: clinic-a's service answers it 6 s later.
    jf = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts",
                         "path": "/tally/inflight?ms.clinic-a=6000", "timeout_s": 120})
    committed.append(jf["id"])
    if not h.wait_until(lambda: tally(svc_a)["keys"].get("inflight") == 1, 10):
        raise Fatal("clinic-a's service did not receive the in-flight query")

    # The disk fills. SQLite may still have room in pages it owns (the WAL is
    # reused after a checkpoint), so writes go on until one needs a new page.
    mark = hub.proc.mark()
    filled = fill(os.path.join(hub.dir, "fill"))
    h.info("filled %d bytes; %d left" % (filled, free_bytes(hub.dir)))
    first_503 = None
    for i in range(400):
        rr = hub.api("POST", "/v1/sites", {"name": "filler-%d" % i,
                                           "labels": {"k%d" % k: "v" * 60 for k in range(20)}})
        if rr.status == 503:
            first_503 = rr
            break
        if rr.status != 201:
            h.check(False, "a write on a full disk answers 201 or 503, nothing else", rr)
            break
    h.check(first_503 is not None, "a write fails once the disk is full (within 400 site adds)")
    if first_503 is None:
        return
    j = first_503.json() or {}
    h.check(j.get("error") == "storage_unavailable" and "disk" in j.get("detail", ""),
            "the 503 says storage_unavailable and that the disk is full", first_503)
    rr = hub.api("POST", "/v1/sites", {"name": "late-site"})
    h.check(rr.status == 503 and (rr.json() or {}).get("error") == "storage_unavailable",
            "another site add on the full disk: 503 storage_unavailable", rr)
    rq = submit(hub, {"sites": ["clinic-a"], "service": "counts", "path": "/tally/refused"})
    h.check(rq.status == 503 and (rq.json() or {}).get("error") == "storage_unavailable",
            "a query submitted on the full disk: 503 storage_unavailable", rq)

    # Reads go on.
    rs = hub.curl("/v1/sites")
    h.check(rs.status == 200 and any(s["name"] == "clinic-a" and s["online"]
                                     for s in (rs.json() or {}).get("sites", [])),
            "GET /v1/sites answers 200 with clinic-a online on the full disk", rs)
    q0b = get_query(hub, j0["id"])
    h.check(q0b["status"] == "complete", "a stored query reads back on the full disk", q0b)
    rp = hub.proxy("clinic-a", "counts", "/count")
    h.check(rp.status == 200, "proxying to clinic-a works on the full disk", rp)

    # Sites connect: clinic-b for the first time, then again after its agent
    # restarts. Their session history rows cannot be written; the tunnels
    # must still be theirs.
    start_site(hub, b)
    rb = hub.proxy("clinic-b", "counts", "/count")
    h.check(rb.status == 200, "clinic-b, connected while the disk is full, serves requests", rb)
    b.proc.stop()
    hub.wait_online("clinic-b", online=False, timeout=10)
    start_site(hub, b)
    rb = hub.proxy("clinic-b", "counts", "/count")
    h.check(rb.status == 200, "clinic-b, reconnected while the disk is full, serves requests", rb)
    # Records are written behind the loop; the hub logs the refused ones once
    # a second (docs/operator-guide.md).
    h.check(hub.proc.wait_log(r"\bsession_store_failed\b.*No space left", timeout=5, since=mark,
                              fatal=False) is not None,
            "the hub logs that a session row could not be stored")

    # The in-flight result comes back while the disk is full: kept in memory.
    hub.proc.wait_log(r"\bquery_store_failed\b.*\bop=finish\b", 20, since=mark)
    qf = get_query(hub, jf["id"])
    h.check(by_site(qf)["clinic-a"]["status"] == "sent",
            "the in-flight result is not stored yet (the disk is full)", qf)
    h.check(hub.proc.alive(), "the hub is still running")

    # Space returns: the hub recovers without a restart.
    os.unlink(os.path.join(hub.dir, "fill"))
    ok = {}

    def write_ok():
        ok["r"] = hub.api("POST", "/v1/sites", {"name": "after-full"})
        return ok["r"].status == 201

    h.check(h.wait_until(write_ok, 20), "writes work again once space returns",
            ok.get("r"))
    qf = wait_complete(hub, jf["id"], 20)
    rf = by_site(qf)["clinic-a"] if qf else {}
    h.check(qf and qf["status"] == "complete" and rf.get("status") == "done"
            and rf.get("http_status") == 200,
            "the result kept in memory is stored once space returns", qf)
    j2 = submit_ok(hub, {"sites": ["clinic-a", "clinic-b"], "service": "counts",
                         "path": "/tally/after"})
    committed.append(j2["id"])
    q2 = wait_complete(hub, j2["id"], 20)
    h.check(q2 and q2["status"] == "complete" and all(
        s["status"] == "done" for s in q2["sites"]), "a query after recovery completes", q2)

    rc = hub.proc.stop(timeout=15)
    h.check(rc == 0, "the hub exits 0 on SIGTERM", rc)
    ok, detail = hub.db_check()
    h.check(ok, "integrity_check is ok afterwards", detail)
    stored = sql(h, hub, "SELECT qid FROM queries ORDER BY id").split()
    h.check(all(q in stored for q in committed),
            "every query answered 201 is in the database", (committed, stored))
    h.check(tally(svc_a)["keys"].get("inflight") == 1,
            "the in-flight query reached clinic-a exactly once", tally(svc_a))


Harness.main("test_disk_full", main)

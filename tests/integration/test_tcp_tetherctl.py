#!/usr/bin/env python3
# Integration: tetherctl connect (--stdio, --listen) to tcp:// services: real OpenSSH and PostgreSQL through the hub.
# SPDX-License-Identifier: MIT
"""A site offers an sshd and a PostgreSQL server that this test starts on
loopback, an echo service and a refused port, as tcp:// services. Users reach
them with tetherctl connect: --stdio as ssh's ProxyCommand, --listen for psql
and for several sockets at once (one TLS + HTTP/2 connection to the hub, one
CONNECT stream per local connection)."""
import getpass
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Fatal, Harness, Proc, Skip, closed_port, free_port,  # noqa: E402
                     load_pgfixture)
from bytestreams import TcpService, echo, has_asan, start_hub_site  # noqa: E402
from h2stall import make_user_token  # noqa: E402

SITE = "clinic-a"


def wait_port(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_sshd(h):
    d = h.mkdir("ssh")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)
    hk, ck = os.path.join(d, "host_ed25519"), os.path.join(d, "id_ed25519")
    for k in (hk, ck):
        r = h.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k])
        if r.rc != 0:
            raise Fatal("ssh-keygen: %r" % r)
    shutil.copy(ck + ".pub", os.path.join(d, "authorized_keys"))
    os.chmod(os.path.join(d, "authorized_keys"), 0o600)
    port = free_port()
    conf = os.path.join(d, "sshd_config")
    with open(conf, "w") as f:
        f.write("""Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile none
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
LogLevel VERBOSE
""" % (port, hk, os.path.join(d, "authorized_keys")))
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    h.spawn("sshd", [sshd, "-D", "-e", "-f", conf])
    if not wait_port(port):
        raise Fatal("sshd did not listen")
    return port, ck


def start_postgres(h):
    """initdb in a temp dir (as postgres when root: it refuses root), trust
    auth on loopback; returns (port, user)."""
    fx = load_pgfixture()
    try:
        PG_BIN = fx.bin_dir()  # Debian: /usr/lib/postgresql/VERSION/bin
    except fx.Error as e:
        raise Skip(str(e))
    d = tempfile.mkdtemp(prefix="tether-pg-")
    h.pg_dir = d
    prefix, user = [], getpass.getuser()
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(d, pw.pw_uid, pw.pw_gid)
        prefix, user = ["runuser", "-u", "postgres", "--"], "postgres"
    data = os.path.join(d, "data")
    r = h.run(prefix + [os.path.join(PG_BIN, "initdb"), "-D", data, "-A", "trust", "-U", user,
                        "--no-sync"], timeout=120)
    if r.rc != 0:
        raise Fatal("initdb: %r" % r)
    port = free_port()
    h.spawn("postgres", prefix + [os.path.join(PG_BIN, "postgres"), "-D", data, "-k", d,
                                  "-h", "127.0.0.1", "-p", str(port), "-c", "fsync=off"])
    if not wait_port(port, 60):
        raise Fatal("postgres did not listen")
    return port, user


def main(h):
    h.require(tools=("ssh", "ssh-keygen"))
    echo_svc = TcpService(echo)
    ssh_port, ssh_key = start_sshd(h)
    pg_port, pg_user = start_postgres(h)
    services = {"ssh": "tcp://127.0.0.1:%d" % ssh_port, "pg": "tcp://127.0.0.1:%d" % pg_port,
                "echo": echo_svc.url, "dead": "tcp://127.0.0.1:%d" % closed_port()}
    hub, site = start_hub_site(h, SITE, services)
    tok = make_user_token(hub, "alice")
    ctl = [h.bin("tetherctl"), "--config", hub.ctl_conf, "--token", tok]

    # A real OpenSSH session with tetherctl connect --stdio as ProxyCommand.
    proxy = " ".join(ctl + ["connect", SITE, "ssh", "--stdio"])
    blob = os.urandom(2 << 20)
    r = h.run(["ssh", "-F", "/dev/null", "-i", ssh_key, "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ProxyCommand=" + proxy, "%s@%s" % (getpass.getuser(), SITE),
               "echo through-the-tunnel; sha256sum"], stdin=blob, timeout=60)
    out = r.stdout if isinstance(r.stdout, str) else r.stdout.decode(errors="replace")
    h.check(r.rc == 0 and "through-the-tunnel" in out and
            hashlib.sha256(blob).hexdigest() in out,
            "an OpenSSH session through tetherctl connect --stdio runs a command and carries "
            "2 MiB of stdin intact", (r.rc, out[-300:], r.stderr[-500:]))

    # --listen: one tetherctl, one hub connection, many local connections.
    lport = free_port()
    lst = Proc(h, "connect-pg", ctl + ["connect", SITE, "pg", "--listen",
                                       "127.0.0.1:%d" % lport], daemon=True)
    h.check(wait_port(lport), "tetherctl connect --listen listens")
    r = h.run(["psql", "-h", "127.0.0.1", "-p", str(lport), "-U", pg_user, "-d", "postgres",
               "-tA", "-v", "ON_ERROR_STOP=1",
               "-c", "create table t(n int)",
               "-c", "insert into t select generate_series(1, 1000)",
               "-c", "select count(*), sum(n) from t"], timeout=60)
    h.check(r.rc == 0 and "1000|500500" in r.stdout,
            "a real psql session through tetherctl connect --listen creates, fills and queries "
            "a table", (r.rc, r.stdout[-300:], r.stderr[-300:]))
    lst.stop()

    elport = free_port()
    Proc(h, "connect-echo", ctl + ["connect", SITE, "echo", "--listen",
                                   "127.0.0.1:%d" % elport], daemon=True)
    h.check(wait_port(elport), "tetherctl connect --listen (echo) listens")
    socks = [socket.create_connection(("127.0.0.1", elport), timeout=20) for _ in range(20)]
    for i, s in enumerate(socks):
        s.sendall(b"sock %d\n" % i)
        s.shutdown(socket.SHUT_WR)  # half-close: the echo service sees EOF and ends too
    got = []
    for s in socks:
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        got.append(buf)
        s.close()
    h.check(got == [b"sock %d\n" % i for i in range(20)],
            "20 local connections at once, each its own stream: bytes back, then EOF after "
            "the local half-close", got[:3])

    # Bulk through tetherctl --listen: MiB each way by SHA-256, timed.
    mib = 32 if has_asan(hub.proc.pid) else 256
    bs = socket.create_connection(("127.0.0.1", elport), timeout=60)
    chunk = os.urandom(1 << 20)
    sent, got, n_got = hashlib.sha256(), hashlib.sha256(), [0]

    def reader():
        while True:
            d = bs.recv(1 << 20)
            if not d:
                return
            got.update(d)
            n_got[0] += len(d)
    t = threading.Thread(target=reader)
    t0 = time.monotonic()
    t.start()
    for _ in range(mib):
        sent.update(chunk)
        bs.sendall(chunk)
    bs.shutdown(socket.SHUT_WR)
    t.join(120)
    secs = time.monotonic() - t0
    bs.close()
    h.check(n_got[0] == mib << 20 and got.hexdigest() == sent.hexdigest(),
            "%d MiB each way through tetherctl connect --listen arrive whole (SHA-256)" % mib,
            n_got[0])
    h.info("tetherctl --listen bulk: %d MiB each way in %.2f s: %.1f MB/s each way"
           % (mib, secs, mib * 1.048576 / secs))

    # A refused service: tetherctl says why and exits non-zero.
    r = h.run(ctl + ["connect", SITE, "dead", "--stdio"], stdin=b"", timeout=30)
    h.check(r.rc == 1 and "refused" in r.stderr and "502" in r.stderr,
            "connect --stdio to a refused port exits 1 saying refused (HTTP 502)",
            (r.rc, r.stderr[-300:]))
    r = h.run(ctl + ["connect", SITE, "nosuch", "--stdio"], stdin=b"", timeout=30)
    h.check(r.rc == 3, "connect to a service the site lacks exits 3 (not found)",
            (r.rc, r.stderr[-300:]))
    r = h.run([h.bin("tetherctl"), "--config", hub.ctl_conf, "--token", "tth_nope", "connect",
               SITE, "echo", "--stdio"], stdin=b"x", timeout=30)
    h.check(r.rc == 4, "connect with a bad token exits 4 (denied)", (r.rc, r.stderr[-300:]))
    r = h.run([h.bin("tetherctl"), "--config", hub.ctl_conf, "--token", tok, "--pin",
               "sha256//" + "A" * 43 + "=", "connect", SITE, "echo", "--stdio"], stdin=b"x",
              timeout=30)
    h.check(r.rc == 6 and "pinned" in r.stderr,
            "connect to a hub whose key is not the pinned one exits 6 and says so",
            (r.rc, r.stderr[-300:]))


def run(h):
    try:
        main(h)
    finally:
        d = getattr(h, "pg_dir", None)
        if d:
            h.stop_daemons()
            for p in h.procs:
                if p.name == "postgres" and p.alive():
                    p.stop(timeout=15)
            shutil.rmtree(d, ignore_errors=True)


Harness.main("test_tcp_tetherctl", run)

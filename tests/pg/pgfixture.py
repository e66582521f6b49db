#!/usr/bin/env python3
# A real PostgreSQL server for the test suite: initdb + pg_ctl on a loopback port, as an unprivileged user.
# SPDX-License-Identifier: MIT
"""Usage: pgfixture.py start|stop|status|down|up BUILD_DIR
       pgfixture.py find

start   initdb a fresh cluster in BUILD_DIR/pgtest/data (trust auth, no
        sync, UTF-8, locale C.UTF-8), start it with `pg_ctl -w` on
        127.0.0.1 and a free port (no Unix socket, fsync off, 300
        connections) and write its base URL,
        postgresql://postgres@127.0.0.1:PORT, to BUILD_DIR/pgtest/url. A
        server left in the same directory (an interrupted run) is stopped
        first.
stop    `pg_ctl -m fast stop` (then immediate, then SIGKILL of the
        postmaster recorded in postmaster.pid), and remove BUILD_DIR/pgtest.
status  print the URL and whether the server answers (exit 1 if not).
down    `pg_ctl -m fast stop`, keeping the cluster and its URL (a database
        outage for tests such as test_pg_restart; clients see their
        connections closed).
up      start the cluster `down` stopped, on the same port.
find    print the directory holding initdb, pg_ctl, postgres and psql
        (exit 1 with a reason when there is none).

The URL file is the contract with the harness (tests/integration/harness.py)
and with the hub: each hub gets its own database under that URL. initdb
refuses to run as root, so as root the server runs as the `postgres` user
(Debian's postgresql package creates it) through runuser, or setpriv when
runuser is missing; as any other user it runs as that user. When that user
cannot reach BUILD_DIR (a build tree under a 0700 home), the cluster lives in
a temporary directory named in BUILD_DIR/pgtest/datadir instead.

CTest runs `start` as the fixture pg/start and `stop` as pg/stop;
deploy/test.sh also runs `stop` on exit, so nothing is left running.
Environment: TETHER_PG_BIN overrides the binary directory.
"""

import fcntl
import glob
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PROGS = ("initdb", "pg_ctl", "postgres", "psql")
SUPERUSER = "postgres"
# Outside the harness's free_port() range (20000-32000) and below the
# kernel's ephemeral ports, so a test's port and the server's never collide.
PORT_LO, PORT_HI = 15432, 19999
START_TRIES = 5


class Error(Exception):
    pass


def say(msg):
    print("pgfixture: %s" % msg, flush=True)


def bin_dir():
    """The directory holding every program of PROGS, or raises Error. Debian
    keeps them in /usr/lib/postgresql/VERSION/bin (not on PATH); the newest
    version wins."""
    cands = []
    if os.environ.get("TETHER_PG_BIN"):
        cands.append(os.environ["TETHER_PG_BIN"])
    def version(p):
        m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", p)
        return (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)
    cands += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    w = shutil.which("pg_ctl")
    if w:
        cands.append(os.path.dirname(os.path.realpath(w)))
    for d in cands:
        if all(os.access(os.path.join(d, p), os.X_OK) for p in PROGS):
            return d
    raise Error("no PostgreSQL server programs (%s) found in %s; Debian: apt-get install "
                "postgresql postgresql-client (deploy/setup.sh)" % (", ".join(PROGS),
                                                                   cands or "/usr/lib/postgresql"))


def paths(build_dir):
    top = os.path.join(os.path.abspath(build_dir), "pgtest")
    return {"top": top, "url": os.path.join(top, "url"), "datadir": os.path.join(top, "datadir"),
            "lock": os.path.join(os.path.abspath(build_dir), ".pgtest.lock")}


def read_url(build_dir):
    """The base URL the running fixture wrote, or None."""
    try:
        with open(paths(build_dir)["url"]) as f:
            return f.read().strip() or None
    except OSError:
        return None


class Runner:
    """Runs the server's programs as the unprivileged user."""

    def __init__(self):
        self.prefix = []
        self.uid = os.geteuid()
        self.gid = os.getegid()
        if self.uid != 0:
            return
        try:
            pw = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise Error("running as root and there is no '%s' user to run PostgreSQL as "
                        "(Debian's postgresql package creates it)" % SUPERUSER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        if shutil.which("runuser"):
            self.prefix = ["runuser", "-u", SUPERUSER, "--"]
        elif shutil.which("setpriv"):
            self.prefix = ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
                           "--init-groups", "--"]
        else:
            raise Error("running as root and neither runuser nor setpriv (util-linux) is "
                        "installed to run PostgreSQL as '%s'" % SUPERUSER)

    def run(self, argv, cwd, timeout=120):
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        env.pop("PGDATA", None)
        p = subprocess.run(self.prefix + argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def own(self, path):
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)

    def can_use(self, d):
        """Whether the server's user can create files in d."""
        if os.geteuid() != 0:
            return os.access(d, os.W_OK | os.X_OK)
        rc, _ = self.run(["test", "-w", d, "-a", "-x", d], cwd="/", timeout=30)
        return rc == 0


def data_dir(build_dir):
    p = paths(build_dir)
    try:
        with open(p["datadir"]) as f:
            return f.read().strip()
    except OSError:
        return os.path.join(p["top"], "data")


def postmaster_pid(data):
    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def pid_is_postgres(pid, data):
    """Whether pid is a live postgres running on this data directory."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return (argv and os.path.basename(argv[0]) in (b"postgres", b"postmaster")
            and os.path.realpath(data).encode() in [os.path.realpath(a.decode(errors="replace"))
                                                    .encode() for a in argv[1:] if a])


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists("/proc/%d" % pid):
            return True
        # A zombie child of ours would linger: pg_ctl daemonizes, so not ours.
        time.sleep(0.05)
    return not os.path.exists("/proc/%d" % pid)


def stop_server(run, pg, data):
    """Stops the server on data if one runs: fast, then immediate, then
    SIGKILL of that postmaster only. Returns a note, or None if none ran."""
    pid = postmaster_pid(data)
    if pid is None:
        return None
    if not pid_is_postgres(pid, data):
        # A stale pid file (the postmaster was killed): pg_ctl would wait on
        # a zombie or signal nobody; its backends exit by themselves.
        return "a stale postmaster.pid in %s (pid %d gone)" % (data, pid)
    pg_ctl = os.path.join(pg, "pg_ctl")
    cwd = os.path.dirname(data)
    for mode in ("fast", "immediate"):
        rc, out = run.run([pg_ctl, "-D", data, "-m", mode, "-w", "-t", "30", "stop"], cwd=cwd)
        if rc == 0 or "is the server running" in out:
            break
        say("pg_ctl stop -m %s: rc=%d %s" % (mode, rc, out.strip()[-300:]))
    # pg_ctl returns once postmaster.pid is gone; the process exits a moment
    # later.
    deadline = time.monotonic() + 10
    while pid_is_postgres(pid, data) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_is_postgres(pid, data):
        # Only the postmaster this fixture started (its pid file, its data
        # dir on the command line); its backends exit when it is gone.
        say("postmaster %d still running: SIGKILL" % pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(pid, 10)
        if pid_is_postgres(pid, data):
            raise Error("postmaster %d on %s would not stop" % (pid, data))
    return "stopped the server on %s (pid %d)" % (data, pid)


def remove_tree(build_dir):
    p = paths(build_dir)
    data = data_dir(build_dir)
    outside = os.path.dirname(data)
    if not data.startswith(p["top"] + os.sep) and \
            os.path.basename(outside).startswith("tether-pgtest-"):
        shutil.rmtree(outside, ignore_errors=True)
    shutil.rmtree(p["top"], ignore_errors=True)


class Lock:
    """One start or stop at a time per build tree (a second ctest, or the
    test command's exit trap, racing the fixture)."""

    def __init__(self, build_dir):
        self.path = paths(build_dir)["lock"]

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *a):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_port(rnd):
    for _ in range(200):
        p = rnd.randrange(PORT_LO, PORT_HI)
        if port_free(p):
            return p
    raise Error("no free port in %d-%d" % (PORT_LO, PORT_HI))


def psql(pg, url, sql, timeout=30):
    """Runs sql through psql (as the invoking user: TCP, trust auth)."""
    env = dict(os.environ, PGCONNECT_TIMEOUT="10")
    p = subprocess.run([os.path.join(pg, "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                        "-d", url, "-c", sql], env=env, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace").strip(), \
        p.stderr.decode("utf-8", "replace").strip()


def start(build_dir):
    t0 = time.monotonic()
    pg = bin_dir()
    run = Runner()
    p = paths(build_dir)
    with Lock(build_dir):
        note = stop_server(run, pg, data_dir(build_dir))
        if note:
            say("left over from an earlier run: " + note)
        remove_tree(build_dir)
        os.makedirs(p["top"])
        base = p["top"]
        run.own(base)
        if not run.can_use(base):
            # The server's user cannot reach the build tree (a 0700 home):
            # the cluster lives in /tmp, named in the datadir file.
            base = tempfile.mkdtemp(prefix="tether-pgtest-")
            run.own(base)
            say("%s cannot reach %s: cluster in %s" % (SUPERUSER, p["top"], base))
        data = os.path.join(base, "data")
        with open(p["datadir"], "w") as f:
            f.write(data + "\n")
        rc, out = run.run([os.path.join(pg, "initdb"), "-D", data, "-U", SUPERUSER, "-A", "trust",
                           "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"], cwd=base)
        if rc != 0:
            raise Error("initdb failed (rc=%d): %s" % (rc, out.strip()[-2000:]))
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write("\n# tether test fixture (tests/pg/pgfixture.py)\n"
                    "include = 'tether-test.conf'\n")
        log = os.path.join(base, "postgres.log")
        rnd = random.Random(os.getpid() ^ int(time.time() * 1e6))
        for attempt in range(1, START_TRIES + 1):
            port = pick_port(rnd)
            conf = os.path.join(data, "tether-test.conf")
            with open(conf, "w") as f:
                f.write("listen_addresses = '127.0.0.1'\n"
                        "port = %d\n"
                        "unix_socket_directories = ''\n"
                        "max_connections = 300\n"
                        "fsync = off\n"
                        "synchronous_commit = on\n"
                        "full_page_writes = off\n"
                        "shared_buffers = 64MB\n"
                        "log_min_messages = warning\n"
                        "log_line_prefix = '%%m [%%p] %%d '\n" % port)
            run.own(conf)
            rc, out = run.run([os.path.join(pg, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60",
                               "start"], cwd=base)
            if rc == 0:
                break
            tail = ""
            try:
                with open(log, errors="replace") as f:
                    tail = f.read()[-1500:]
            except OSError:
                pass
            # Another process took the port between the check and the bind.
            if re.search(r"could not bind|Address already in use", tail) and attempt < START_TRIES:
                say("port %d taken (try %d): another port" % (port, attempt))
                stop_server(run, pg, data)
                continue
            stop_server(run, pg, data)
            raise Error("pg_ctl start failed (rc=%d): %s\n%s" % (rc, out.strip()[-500:], tail))
        url = "postgresql://%s@127.0.0.1:%d" % (SUPERUSER, port)
        rc, out, err = psql(pg, url + "/postgres", "SELECT version()")
        if rc != 0:
            stop_server(run, pg, data)
            raise Error("the new server does not answer at %s: %s" % (url, err))
        tmp = p["url"] + ".tmp"
        with open(tmp, "w") as f:
            f.write(url + "\n")
        os.replace(tmp, p["url"])
    say("%s: %s (data %s, pid %s, %.1f s)" % (url, out.split(" on ")[0], data,
                                              postmaster_pid(data), time.monotonic() - t0))


def stop(build_dir):
    p = paths(build_dir)
    if not os.path.exists(p["top"]):
        say("nothing to stop (%s absent)" % p["top"])
        return
    pg = bin_dir()
    run = Runner()
    with Lock(build_dir):
        note = stop_server(run, pg, data_dir(build_dir))
        remove_tree(build_dir)
    say((note or "no server was running") + "; removed %s" % p["top"])


def down(build_dir):
    pg = bin_dir()
    run = Runner()
    with Lock(build_dir):
        note = stop_server(run, pg, data_dir(build_dir))
    say(note or "no server was running")


def up(build_dir):
    t0 = time.monotonic()
    pg = bin_dir()
    run = Runner()
    data = data_dir(build_dir)
    if not os.path.isdir(data):
        raise Error("no cluster in %s: run start first" % data)
    with Lock(build_dir):
        log = os.path.join(os.path.dirname(data), "postgres.log")
        rc, out = run.run([os.path.join(pg, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60",
                           "start"], cwd=os.path.dirname(data))
        if rc != 0:
            raise Error("pg_ctl start failed (rc=%d): %s" % (rc, out.strip()[-500:]))
    say("started again on %s (%.1f s)" % (data, time.monotonic() - t0))


def status(build_dir):
    url = read_url(build_dir)
    if not url:
        say("no server (%s absent)" % paths(build_dir)["url"])
        return 1
    rc, out, err = psql(bin_dir(), url + "/postgres", "SELECT count(*) FROM pg_database")
    if rc != 0:
        say("%s does not answer: %s" % (url, err))
        return 1
    print(url)
    say("%s answers; %s databases (data %s)" % (url, out, data_dir(build_dir)))
    return 0


def main(argv):
    if not (len(argv) == 3 and argv[1] in ("start", "stop", "status", "down", "up")
            or len(argv) in (2, 3) and argv[1:2] == ["find"]):
        sys.stderr.write(__doc__.split("\n\n")[0] + "\n")
        return 2
    try:
        if argv[1] == "find":
            print(bin_dir())
            return 0
        if argv[1] == "status":
            return status(argv[2])
        {"start": start, "stop": stop, "down": down, "up": up}[argv[1]](argv[2])
        return 0
    except (Error, subprocess.TimeoutExpired, OSError) as e:
        sys.stderr.write("pgfixture: %s: %s\n" % (argv[1], e))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

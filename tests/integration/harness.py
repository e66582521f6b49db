# Integration test harness: real tether processes on loopback, logs, waits, checks, cleanup.
# SPDX-License-Identifier: MIT
"""Stdlib-only helpers for tests/integration/test_*.py.

A test does:

    from harness import Harness
    def main(h):
        hub = h.hub(); hub.init(); hub.start()
        ...
        h.check(cond, "what must hold")
    Harness.main("name", main, tools=("curl",))

Environment: TETHER_BIN (directory holding tether-hub, tether-site,
tetherctl; default $TETHER_SRC/build), TETHER_SRC (source tree; default two
levels above this file), TETHER_KEEP=1 keeps the temp dir (and the test's
PostgreSQL databases), TETHER_IT_VERBOSE=1 prints every command. Exit codes:
0 pass, 1 fail, 77 skipped.

The registry's backend: TETHER_TEST_DB=pg runs every hub on PostgreSQL
instead of STATE/hub.db. Hub.init() then creates a database of its own on the
server whose base URL tests/pg/pgfixture.py wrote to
$TETHER_BIN/pgtest/url (or TETHER_TEST_PG_URL, e.g.
postgresql://postgres@127.0.0.1:5432) and passes `--db URL/DBNAME` to
`tether-hub init`; the database is dropped at cleanup. Read the registry with
hub.sql() and check it with hub.db_check(), never through hub.db itself; a
check that only SQLite can make calls h.sqlite_only(reason), which skips the
test (77) on PostgreSQL.

After the test body, every tether daemon still running gets SIGTERM and must
exit 0, and no daemon log may hold a sanitizer report. On failure the tail of
every log is printed, plus a NOTE for any daemon that got a signal this
harness did not send (another user's pkill hitting the test's processes).

Long-running processes must be started from the main thread: they get
PR_SET_PDEATHSIG(SIGKILL), so they die with the thread that started them even
if this script is SIGKILLed (for instance by a CTest timeout).
"""

import atexit
import base64
import ctypes
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
DB_BACKENDS = ("sqlite", "pg")


class Fatal(Exception):
    """A step the rest of the test depends on failed."""


class Skip(Exception):
    pass


def _src_dir():
    return os.environ.get("TETHER_SRC") or os.path.normpath(os.path.join(HERE, "..", ".."))


def _bin_dir():
    return os.environ.get("TETHER_BIN") or os.path.join(_src_dir(), "build")


def debian_import(*names):
    """Imports the modules (e.g. "h2.connection") and returns the first, or
    None when one is missing. A python3 outside Debian's (pyenv) does not see
    Debian's packages; pure-python ones (python3-h2) serve from there too."""
    for attempt in (0, 1):
        try:
            mods = [importlib.import_module(n) for n in names]
            return mods[0]
        except ImportError:
            if attempt == 0 and "/usr/lib/python3/dist-packages" not in sys.path:
                sys.path.append("/usr/lib/python3/dist-packages")
    return None


def import_grpc(script):
    """The grpc module, or None. Debian's python3-grpcio is built for
    Debian's python3: when another interpreter (pyenv) runs the test script
    (its __file__), runs the script again under /usr/bin/python3 instead."""
    try:
        import grpc
        return grpc
    except ImportError:
        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != \
                os.path.realpath("/usr/bin/python3") and not os.environ.get("TETHER_GRPC_REEXEC"):
            os.environ["TETHER_GRPC_REEXEC"] = "1"
            os.execv("/usr/bin/python3",
                     ["/usr/bin/python3", os.path.abspath(script)] + sys.argv[1:])
        return None


def load_pgfixture():
    """tests/pg/pgfixture.py as a module (the server's URL file, its
    programs)."""
    path = os.path.join(HERE, "..", "pg", "pgfixture.py")
    spec = importlib.util.spec_from_file_location("tether_pgfixture", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_sample_module():
    """The sample service as a module (for pattern() and friends)."""
    path = os.path.join(_src_dir(), "deploy", "sample-service.py")
    spec = importlib.util.spec_from_file_location("tether_sample_service", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------
# ports

_PORT_LOCK = threading.Lock()
_PORTS_GIVEN = set()


TCP_STATES = {1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
              6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
              11: "CLOSING"}


def _proc_addr(hexaddr):
    """'0100007F:1F90' (/proc/net/tcp) -> '127.0.0.1:8080'; IPv6 likewise."""
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        host = "[%s]" % socket.inet_ntop(socket.AF_INET6, words)
    return "%s:%d" % (host, int(port, 16))


def process_tcp(pid):
    """The TCP sockets process pid holds: [(state, local, peer)], e.g.
    ("ESTAB", "127.0.0.1:41234", "127.0.0.1:6443"). Read from /proc (the
    process's descriptors, then its namespace's tcp tables), not `ss -p`,
    which reads every process's descriptors and takes seconds on a host
    holding tens of thousands of sockets. [] when the process is gone."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return []
    out = []
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[9] in inodes:
                        out.append((TCP_STATES.get(int(parts[3], 16), parts[3]),
                                    _proc_addr(parts[1]), _proc_addr(parts[2])))
        except OSError:
            pass
    return out


def free_port():
    """A TCP port free on 127.0.0.1, outside the kernel's ephemeral range (so
    an outgoing connection cannot take it between now and its use), random so
    that tests running in parallel rarely collide."""
    lo, hi = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            elo, _ = (int(x) for x in f.read().split())
        if elo > 12000:
            hi = min(hi, elo - 1)
    except (OSError, ValueError):
        pass
    rnd = random.Random(os.getpid() ^ int(time.time() * 1e6))
    with _PORT_LOCK:
        for _ in range(500):
            p = rnd.randrange(lo, hi)
            if p in _PORTS_GIVEN:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            finally:
                s.close()
            _PORTS_GIVEN.add(p)
            return p
    raise Fatal("no free port found")


def closed_port():
    """A port on which nothing listens (for "service down" cases)."""
    return free_port()


# ---------------------------------------------------------------------------
# processes

def _pdeathsig():
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Proc:
    """A background process; stdout and stderr go to one log file."""

    def __init__(self, h, name, argv, env=None, cwd=None, daemon=False):
        self.h = h
        self.name = name
        # A tether daemon: must exit 0 on SIGTERM at the end of the test.
        self.daemon = daemon
        self.argv = list(argv)
        self.log_path = h.path("logs", "%s.log" % name)
        n = 2
        while os.path.exists(self.log_path):
            self.log_path = h.path("logs", "%s.%d.log" % (name, n))
            n += 1
        self._log = open(self.log_path, "ab", buffering=0)
        self._log.write(("# %s\n" % " ".join(self.argv)).encode())
        self._log_start = self._log.tell()
        h.note("start %s: %s" % (name, " ".join(self.argv)))
        try:
            self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, env=env or h.env, cwd=cwd,
                                      start_new_session=True, preexec_fn=_pdeathsig)
        except OSError as e:
            self._log.close()
            raise Fatal("cannot start %s (%s): %s" % (name, self.argv[0], e))
        self.pid = self.p.pid
        # (signal, log size when sent) for every signal this harness sent, to
        # tell them from signals sent by anyone else.
        self.signals_sent = []
        h.procs.append(self)

    def alive(self):
        return self.p.poll() is None

    def returncode(self):
        return self.p.poll()

    def text(self, since=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(since, self._log_start))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def mark(self):
        """Position in the log; pass as since= to wait for lines after now."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def find(self, regex, since=0):
        """First match of regex (re.M) in the log since `since`, or None."""
        return re.search(regex, self.text(since), re.M)

    def wait_log(self, regex, timeout=15.0, since=0, fatal=True):
        """Waits for a log line matching regex. Returns the match. On timeout
        or process exit raises Fatal (fatal=True) or returns None."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.find(regex, since)
            if m:
                return m
            if not self.alive():
                # One last read: the line may have landed just before exit.
                m = self.find(regex, since)
                if m:
                    return m
                msg = "%s exited (rc=%s) before logging /%s/" % (self.name, self.returncode(),
                                                                   regex)
                break
            if time.monotonic() >= deadline:
                msg = "%s did not log /%s/ within %.1fs" % (self.name, regex, timeout)
                break
            time.sleep(0.05)
        if fatal:
            raise Fatal(msg)
        self.h.note(msg)
        return None

    def signal(self, sig):
        self.signals_sent.append((int(sig), self.mark()))
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def _killpg(self, sig):
        self.signals_sent.append((int(sig), self.mark()))
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            self.signal(sig)

    def kill9(self):
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=5.0):
        """SIGTERM to its process group, then SIGKILL after timeout. The group
        is signalled only while the leader is unreaped, so its id cannot have
        been reused. Returns the exit code."""
        if self.alive():
            self._killpg(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.h.note("%s ignored SIGTERM for %.1fs; SIGKILL" % (self.name, timeout))
                self._killpg(signal.SIGKILL)
                try:
                    self.p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        try:
            self._log.close()
        except OSError:
            pass
        return self.p.poll()

    def rss_kib(self):
        """VmRSS of the process in KiB, or None when gone."""
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None


# ---------------------------------------------------------------------------
# results of commands

class Result:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed

    @property
    def stdout(self):
        return self.out.decode("utf-8", "replace")

    @property
    def stderr(self):
        return self.err.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError as e:
            raise Fatal("%s: stdout is not JSON (%s): %r" % (os.path.basename(self.argv[0]), e,
                                                            self.out[:300]))

    def __repr__(self):
        return "rc=%s stdout=%r stderr=%r" % (self.rc, self.out[:300], self.err[:300])


class CurlResult:
    def __init__(self, rc, status, version, headers, body, stderr, elapsed, size=0):
        self.rc = rc  # curl's exit code
        self.status = status  # int HTTP status, 0 when none
        self.version = version  # "1.1", "2", ...
        self.headers = headers  # dict lower-case name -> last value
        self.body = body  # bytes (None when written to a file)
        self.stderr = stderr
        self.elapsed = elapsed
        self.size = size  # body bytes curl received

    def json(self):
        try:
            return json.loads(self.body or b"")
        except ValueError:
            return None

    def __repr__(self):
        return "curl rc=%d status=%d http/%s body=%r err=%r" % (
            self.rc, self.status, self.version, (self.body or b"")[:300], self.stderr[-300:])


# ---------------------------------------------------------------------------
# tether roles

def read_conf(path):
    """key = value file -> dict of lists (keys may repeat)."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def edit_conf(path, key, value):
    """Replaces every `key = ...` line with one `key = value` at the first
    such line's place (appends if absent)."""
    with open(path) as f:
        lines = f.read().splitlines()
    out, done = [], False
    for line in lines:
        s = line.strip()
        if not s.startswith("#") and "=" in s and s.split("=", 1)[0].strip() == key:
            if not done:
                out.append("%s = %s" % (key, value))
                done = True
            continue
        out.append(line)
    if not done:
        out.append("%s = %s" % (key, value))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


class Hub:
    def __init__(self, h, name="hub", port=None):
        self.h = h
        self.name = name
        self.dir = h.mkdir(name)
        self.port = port or free_port()
        self.proc = None
        self.pin = None
        self.token = None
        self.conf = None
        # The hub's PostgreSQL database (TETHER_TEST_DB=pg), set by init().
        self.db_url = None
        # The test clock (hub_now() + offset, TETHER_TEST_CLOCK_FILE): off
        # unless start(test_clock=True).
        self.clock_path = os.path.join(self.dir, "test-clock")

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def ctl_conf(self):
        return os.path.join(self.dir, "ctl.conf")

    def init(self, extra=(), db=None, public=None):
        """tether-hub init. On PostgreSQL (TETHER_TEST_DB=pg) the hub gets a
        new database of its own, or the database URL db (hubs of one
        cluster share one); db= is refused on SQLite. public: the --public
        endpoints, in order (default: the hub's own address)."""
        argv = [self.h.bin("tether-hub"), "init", "--state", self.dir, "--name", "127.0.0.1"]
        for ep in public or [self.addr]:
            argv += ["--public", ep]
        if self.h.db_backend == "pg":
            self.h.pg_require_hub_support()
            self.db_url = db or self.h.pg_create_db(self.name)
            argv += ["--db", self.db_url]
        elif db is not None:
            raise Fatal("Hub.init(db=...) needs the PostgreSQL backend (TETHER_TEST_DB=pg)")
        r = self.h.run(argv + list(extra), timeout=60)
        if r.rc != 0 and self.h.db_backend == "pg" and \
                "built without PostgreSQL support" in r.stderr:
            raise Skip("this tether-hub was built without PostgreSQL support (libpq)")
        if r.rc != 0:
            raise Fatal("tether-hub init failed: %r" % r)
        files = ["hub.key", "hub.crt", "admin.token", "ctl.conf", "hub.conf"]
        if self.h.db_backend == "sqlite":
            files.append("hub.db")
        for f in files:
            if not os.path.exists(os.path.join(self.dir, f)):
                raise Fatal("tether-hub init did not create %s" % f)
        if self.h.db_backend == "pg":
            with open(os.path.join(self.dir, "hub.conf")) as f:
                conf = f.read()
            self.h.check(self.db_url in conf and
                         not os.path.exists(os.path.join(self.dir, "hub.db")),
                         "init --db keeps the database URL in hub.conf and makes no hub.db",
                         conf[-500:])
        self.conf = read_conf(self.ctl_conf)
        try:
            self.pin = self.conf["hub_pin"][-1]
            self.token = self.conf["token"][-1]
        except KeyError as e:
            raise Fatal("ctl.conf lacks key %s: %r" % (e, self.conf))
        with open(os.path.join(self.dir, "admin.token")) as f:
            admin = f.read().strip()
        if admin != self.token:
            self.h.check(False, "admin.token (%r...) equals ctl.conf token" % admin[:8])
        return r

    @property
    def db_path(self):
        """STATE/hub.db, the SQLite registry (None on PostgreSQL)."""
        return os.path.join(self.dir, "hub.db") if self.h.db_backend == "sqlite" else None

    def sql_rows(self, query):
        """Runs one SQL statement on the hub's registry, whichever the
        backend; returns its rows as lists of str (None for NULL). Write
        portable SQL: a boolean reads "1"/"0" on SQLite, "t"/"f" on
        PostgreSQL."""
        if self.h.db_backend == "pg":
            if not self.db_url:
                raise Fatal("hub %s has no database yet (init() first)" % self.name)
            return self.h.pg_rows(self.db_url, query)
        import sqlite3
        c = sqlite3.connect("file:%s?mode=rw" % self.db_path, uri=True, timeout=10)
        try:
            rows = c.execute(query).fetchall()
        except sqlite3.Error as e:
            raise Fatal("sqlite3 %s: %s" % (query, e))
        finally:
            c.close()
        return [[None if v is None else str(v) for v in row] for row in rows]

    def sql(self, query):
        """sql_rows() as the sqlite3 tool prints them: columns joined by
        "|", rows by newlines, NULL as an empty string."""
        return "\n".join("|".join("" if v is None else v for v in row)
                         for row in self.sql_rows(query))

    def db_check(self):
        """Checks the registry's storage: (ok, detail). SQLite: PRAGMA
        integrity_check. PostgreSQL: amcheck over every table (verify_heapam)
        and B-tree index (bt_index_check) of the hub's database."""
        if self.h.db_backend == "sqlite":
            out = self.sql("PRAGMA integrity_check")
            return out == "ok", out
        # amcheck in a schema of its own, out of the registry's way.
        self.sql("CREATE SCHEMA IF NOT EXISTS tether_test; "
                 "CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA tether_test")
        user = ("c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace, "
                "'information_schema'::regnamespace, 'tether_test'::regnamespace)")
        bad = self.sql_rows(
            "SELECT c.relname, v.blkno, v.msg FROM pg_class c, "
            "LATERAL tether_test.verify_heapam(c.oid, check_toast => true) v "
            "WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p' AND " + user)
        if bad:
            return False, "verify_heapam: %r" % bad[:5]
        n = self.sql("SELECT count(tether_test.bt_index_check(c.oid, true)) FROM pg_index i "
                     "JOIN pg_class c ON c.oid = i.indexrelid "
                     "JOIN pg_am a ON a.oid = c.relam "
                     "WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND "
                     "c.relpersistence = 'p' AND " + user)
        tables = self.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        return int(tables or 0) > 0, "%s tables, %s B-tree indexes checked" % (tables, n)

    def set_conf(self, **keys):
        """Sets keys in hub.conf (edit_conf), for the next start or reload()."""
        for k, v in keys.items():
            edit_conf(os.path.join(self.dir, "hub.conf"), k, str(v))

    def reload(self, **keys):
        """set_conf(**keys), then SIGHUP; returns once the hub logged
        config_reloaded."""
        self.set_conf(**keys)
        mark = self.proc.mark()
        self.proc.signal(signal.SIGHUP)
        self.proc.wait_log(r"\bconfig_reloaded\b", 10, since=mark)

    def start(self, extra=(), wait=True, timeout=15.0, test_clock=False, env=None):
        """test_clock: the hub reads its wall clock through the offset file
        clock_set() writes (builds without TETHER_TEST_HOOKS: the test is
        skipped). env: variables added to the hub's environment only."""
        penv = dict(self.h.env, **(env or {}))
        if test_clock:
            penv["TETHER_TEST_CLOCK_FILE"] = self.clock_path
        self.proc = Proc(self.h, self.name, [self.h.bin("tether-hub"), "run", "--state",
                                             self.dir, "--listen", self.addr] + list(extra),
                         env=penv, daemon=True)
        if wait:
            self.proc.wait_log(r"\blistening\b", timeout)
        if test_clock:
            self.proc.wait_log(r"\bhub_started\b", timeout)
            if not self.proc.find(r"\btest_clock\b"):
                raise Skip("tether-hub built without TETHER_TEST_HOOKS: no test clock")
        return self.proc

    def clock_set(self, offset):
        """Sets the hub's clock to the real time plus `offset` seconds (not
        cumulative); the hub reads it at its next look at the time."""
        tmp = self.clock_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % int(offset))
        os.replace(tmp, self.clock_path)
        self.h.info("hub clock set to real time %+d s" % int(offset))

    def ctl(self, *args, stdin=None, timeout=30, use_hub=True, token=None):
        """tetherctl --config ctl.conf [--hub URL] ARGS."""
        argv = [self.h.bin("tetherctl"), "--config", self.ctl_conf]
        if use_hub:
            argv += ["--hub", self.url]
        if token:
            argv += ["--token", token]
        return self.h.run(argv + list(args), stdin=stdin, timeout=timeout)

    def ctl_json(self, *args, **kw):
        r = self.ctl(*(list(args) + ["--json"]), **kw)
        if r.rc != 0:
            raise Fatal("tetherctl %s failed: %r" % (" ".join(args), r))
        return r.json()

    def token_create(self, name, *args):
        """tetherctl token create NAME ARGS; returns the new token."""
        r = self.ctl("token", "create", name, *args)
        tok = r.stdout.strip()
        if r.rc != 0 or not tok.startswith("tth_") or "\n" in tok:
            raise Fatal("token create %s: %r" % (name, r))
        return tok

    def keepalive(self, timeout=10):
        """An http.client HTTPS connection to the hub (certificate not
        checked), to send several requests on one connection."""
        import http.client
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=timeout)

    def site_add(self, name, *extra):
        r = self.ctl("site", "add", name, *extra)
        if r.rc != 0:
            raise Fatal("tetherctl site add %s failed: %r" % (name, r))
        tok = r.stdout.strip()
        if not tok or "\n" in tok:
            raise Fatal("tetherctl site add printed %r, expected one token" % r.stdout)
        return tok

    def sites(self):
        """site list --json -> {name: site}"""
        d = self.ctl_json("site", "list")
        if not isinstance(d, dict) or not isinstance(d.get("sites"), list):
            raise Fatal("site list --json is not {\"sites\": [...]}: %r" % d)
        return {s.get("name"): s for s in d["sites"]}

    def site_show(self, name):
        return self.ctl_json("site", "show", name)

    def _wait_site(self, name, ok, what, timeout, step):
        """Polls the site list until ok(site object) holds; returns the
        object, or None after noting `what` was not reached within timeout."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.sites().get(name)
            except Fatal as e:
                self.h.note(str(e))
            if last is not None and ok(last):
                return last
            if time.monotonic() >= deadline:
                self.h.note("site %s not %s within %.1fs: %r" % (name, what, timeout, last))
                return None
            time.sleep(step)

    @staticmethod
    def _here(s):
        """This hub holds the site's tunnel. On a cluster, "online" also
        holds for a site another hub serves through its peer link."""
        return bool(s.get("local", s.get("online")))

    def wait_online(self, name, online=True, timeout=15.0):
        """Polls site list until whether this hub holds the site's tunnel
        equals `online`. Returns the site object or None."""
        return self._wait_site(name, lambda s: self._here(s) == online,
                               "online=%s" % online, timeout, 0.2)

    def wait_ready(self, name, timeout=10.0):
        """Waits until this hub holds the site's tunnel and its services are
        known (the hub learns them from the site's hello, just after
        site_connected). Returns the site object or None."""
        return self._wait_site(name, lambda s: self._here(s) and s.get("services"),
                               "online with services", timeout, 0.1)

    def peer_link_up(self, other, direction, since=0, timeout=10.0):
        """The peer_link_up line this hub logs for its link (direction "out"
        or "in") with hub other, or None after timeout."""
        return self.proc.wait_log(r"\bpeer_link_up\b.*pin=%s dir=%s" % (
            re.escape(other.pin), direction), timeout, since=since, fatal=False)

    def peer_links(self):
        """{dir: count} of tether_peer_links in GET /metrics ({} unreadable)."""
        r = self.curl("/metrics")
        return {k: int(v) for k, v in re.findall(
            r'^tether_peer_links\{dir="(\w+)"\} (\d+)$', r.body.decode(errors="replace"),
            re.M)} if r.status == 200 else {}

    def curl(self, path, **kw):
        """curl to this hub with its pin and the admin token by default."""
        kw.setdefault("pin", self.pin)
        kw.setdefault("token", self.token)
        return self.h.curl(self.url + path, **kw)

    def proxy(self, site, service, path, **kw):
        return self.curl("/v1/sites/%s/services/%s%s" % (site, service, path), **kw)

    def proxy_refusals(self):
        """/metrics' tether_proxy_refused_total by reason ({} if unreadable)."""
        r = self.curl("/metrics")
        return {k: int(v) for k, v in re.findall(
            r'^tether_proxy_refused_total\{reason="(\w+)"\} (\d+)$',
            r.body.decode(errors="replace"), re.M)} if r.status == 200 else {}

    def api(self, method, path, body=None, **kw):
        """JSON API call; body (dict/list) is sent as JSON, a str/bytes as is."""
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if body is not None:
            kw.setdefault("headers", {})
            kw["headers"].setdefault("Content-Type", "application/json")
        return self.curl(path, method=method, data=body, **kw)


class Site:
    def __init__(self, h, name, hub=None, dirname=None):
        self.h = h
        self.name = name
        self.hub = hub
        self.dir = h.mkdir(dirname or ("site-" + name))
        self.proc = None

    @property
    def conf_path(self):
        return os.path.join(self.dir, "site.conf")

    def enroll(self, token, extra=(), check=True):
        """tether-site enroll with the token on stdin ("-")."""
        r = self.h.run([self.h.bin("tether-site"), "enroll", "--state", self.dir] + list(extra)
                       + ["-"], stdin=(token + "\n").encode(), timeout=60)
        if check and r.rc != 0:
            raise Fatal("tether-site enroll %s failed: %r" % (self.name, r))
        if check and not os.path.exists(self.conf_path):
            raise Fatal("tether-site enroll did not write %s" % self.conf_path)
        return r

    def start(self, services, extra=(), wait=True, timeout=15.0):
        """services: {"web": "http://127.0.0.1:PORT", ...}"""
        argv = [self.h.bin("tether-site"), "run", "--state", self.dir]
        for k, v in services.items():
            argv += ["--service", "%s=%s" % (k, v)]
        self.proc = Proc(self.h, "site-" + self.name, argv + list(extra), daemon=True)
        if wait:
            self.proc.wait_log(r"\bconnected hub=|\"event\":\"connected\"", timeout)  # text or json
        return self.proc


class Service:
    """deploy/sample-service.py on a free port."""

    def __init__(self, h, name="svc", site_name="", port=None):
        self.h = h
        self.port = port or free_port()
        argv = [sys.executable, os.path.join(_src_dir(), "deploy", "sample-service.py"),
                str(self.port)]
        if site_name:
            argv += ["--name", site_name]
        self.proc = Proc(h, name, argv)
        self.proc.wait_log(r"^listening %d$" % self.port, 15)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def get(self, path, timeout=10):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def stats(self, reset=False):
        st, body = self.get("/stats?reset=1" if reset else "/stats")
        return json.loads(body) if st == 200 else None


# ---------------------------------------------------------------------------
# TLS helpers

class ProxyLoad(threading.Thread):
    """Proxied GETs through one hub to one site's "web" service, one after
    another, HTTP/1.1 and HTTP/2 in turn, a pause apart; keeps (time,
    status, body ok) of each answer. start(), then stop.set() and join()."""

    def __init__(self, hub, site, pause=0.05):
        super().__init__(daemon=True)
        self.hub, self.site, self.pause = hub, site, pause
        self.results = []
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            r = self.hub.proxy(self.site, "web", "/echo?n=%d" % n, http="2" if n % 2 else "1.1",
                               timeout=10)
            ok = r.status == 200 and (r.json() or {}).get("query") == "n=%d" % n
            self.results.append((time.monotonic(), r.status, ok))
            time.sleep(self.pause)

    def between(self, t0, t1):
        return [x for x in self.results if t0 <= x[0] <= t1]


def cert_der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def openssl_pin(cert_pem_path):
    """sha256//BASE64 of the certificate's SPKI, via the openssl tool (None if
    openssl is missing)."""
    if not shutil.which("openssl"):
        return None
    p1 = subprocess.run(["openssl", "x509", "-in", cert_pem_path, "-noout", "-pubkey"],
                        capture_output=True, timeout=20)
    if p1.returncode != 0:
        return None
    p2 = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=p1.stdout,
                        capture_output=True, timeout=20)
    if p2.returncode != 0:
        return None
    return "sha256//" + base64.b64encode(hashlib.sha256(p2.stdout).digest()).decode()


def tls_connect(port, alpn=("http/1.1",), cert=None, key=None, server_cert_pem=None,
                timeout=10.0):
    """TLS 1.3 connection to 127.0.0.1:port. When server_cert_pem is given, the
    peer's certificate must be exactly that one (pinning by certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise
    if server_cert_pem:
        if s.getpeercert(binary_form=True) != cert_der(server_cert_pem):
            s.close()
            raise Fatal("hub presented a certificate other than %s" % server_cert_pem)
    return s


# ---------------------------------------------------------------------------
# the harness

class Harness:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.checks = 0
        self.procs = []
        self.verbose = os.environ.get("TETHER_IT_VERBOSE") == "1"
        self.keep = os.environ.get("TETHER_KEEP") == "1"
        self.bin_dir = _bin_dir()
        self.src_dir = _src_dir()
        self.tmp = tempfile.mkdtemp(prefix="tether-it-%s-" % name)
        os.makedirs(os.path.join(self.tmp, "logs"))
        os.makedirs(os.path.join(self.tmp, "home"))
        self.cmd_log_path = os.path.join(self.tmp, "logs", "commands.log")
        self.env = dict(os.environ)
        # No ~/.curlrc, no user tetherctl config: the tests see only their own.
        self.env["HOME"] = os.path.join(self.tmp, "home")
        self.env.pop("TETHER_CONFIG", None)
        self.env.setdefault("LC_ALL", "C")
        self._cleaned = False
        self._at_cleanup = []  # callables run after the daemons stop and the databases drop
        self._t0 = time.monotonic()
        self.db_backend = os.environ.get("TETHER_TEST_DB") or "sqlite"
        if self.db_backend not in DB_BACKENDS:
            raise SystemExit("TETHER_TEST_DB=%s: expected one of %s" % (self.db_backend,
                                                                     ", ".join(DB_BACKENDS)))
        self._pg = None  # (pgfixture module, base URL, psql), once needed
        self._pg_dbs = []  # databases this test created, dropped at cleanup
        self._pg_hub_ok = None
        atexit.register(self.cleanup)

    # --- files -------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def mkdir(self, name):
        d = self.path(name)
        n = 2
        while os.path.exists(d):
            d = self.path("%s.%d" % (name, n))
            n += 1
        os.makedirs(d)
        os.chmod(d, 0o700)
        return d

    def bin(self, prog):
        p = os.path.join(self.bin_dir, prog)
        if not os.access(p, os.X_OK):
            raise Skip("%s not built (looked in TETHER_BIN=%s)" % (prog, self.bin_dir))
        return p

    def require(self, *progs, tools=()):
        for p in progs:
            self.bin(p)
        for t in tools:
            if not shutil.which(t):
                raise Skip("tool %r not found in PATH" % t)

    # --- the registry's database (TETHER_TEST_DB) -------------------------

    def sqlite_only(self, reason):
        """Skips the test (77) on PostgreSQL: reason says what only SQLite
        has (e.g. "ENOSPC of STATE/hub.db")."""
        if self.db_backend != "sqlite":
            raise Skip("SQLite only: %s" % reason)

    def pg_only(self, reason):
        """Skips the test (77) on SQLite (e.g. several hubs on one database)."""
        if self.db_backend != "pg":
            raise Skip("PostgreSQL only (TETHER_TEST_DB=pg): %s" % reason)

    def _pg_setup(self):
        if self._pg:
            return self._pg
        fx = load_pgfixture()
        base = os.environ.get("TETHER_TEST_PG_URL") or fx.read_url(self.bin_dir)
        if not base:
            raise Fatal("TETHER_TEST_DB=pg but no PostgreSQL server: %s is missing (start one "
                        "with tests/pg/pgfixture.py start %s, or set TETHER_TEST_PG_URL)" % (
                            fx.paths(self.bin_dir)["url"], self.bin_dir))
        try:
            psql = os.path.join(fx.bin_dir(), "psql")
        except fx.Error:
            psql = shutil.which("psql")
        if not psql:
            raise Fatal("TETHER_TEST_DB=pg but psql is not installed (postgresql-client)")
        self._pg = (fx, base.strip(), psql)
        return self._pg

    def pg_url(self, db="postgres"):
        """URL of database db on the test server (the base URL's own
        database, if it names one, replaced; its ?parameters kept)."""
        import urllib.parse
        u = urllib.parse.urlsplit(self._pg_setup()[1])
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + db, u.query, ""))

    def pg_rows(self, url, query, timeout=60):
        """Runs SQL on a PostgreSQL database with psql; returns the last
        statement's rows as lists of str (None for NULL)."""
        psql = self._pg_setup()[2]
        env = dict(self.env, PGCONNECT_TIMEOUT="10")
        r = self.run([psql, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e",
                      "-P", "null=\x1d", "-d", url, "-c", query], timeout=timeout, env=env)
        if r.rc != 0:
            raise Fatal("psql %s: %s (rc=%s)" % (query[:200], r.stderr.strip()[-500:], r.rc))
        out = r.stdout
        if out == "":
            return []
        if out.endswith("\n"):
            out = out[:-1]
        return [[None if v == "\x1d" else v for v in rec.split("\x1f")]
                for rec in out.split("\x1e")]

    def pg_create_db(self, label):
        """A new, empty database (dropped at cleanup); returns its URL. The
        name holds the test's name, label, a counter and the PID, so tests
        running in parallel never share one."""
        base = re.sub(r"[^a-z0-9]+", "_", ("%s_%s" % (self.name, label)).lower()).strip("_")
        name = "t_%s_%d_%d" % (base[:40], len(self._pg_dbs) + 1, os.getpid())
        self.pg_rows(self.pg_url(), 'CREATE DATABASE "%s"' % name)
        self._pg_dbs.append(name)
        self.note("PostgreSQL database %s" % name)
        return self.pg_url(name)

    def pg_private(self):
        """A PostgreSQL server of the test's own (for tests that stop and
        start it; the shared fixture serves the others), stopped at cleanup;
        hubs init'ed after this get their databases there. Returns (fixture
        module, data dir) for fx.down(dir) / fx.up(dir)."""
        fx = load_pgfixture()
        pgdir = self.path("pg")
        os.makedirs(pgdir)
        fx.start(pgdir)
        self.at_cleanup(lambda: fx.stop(pgdir))
        os.environ["TETHER_TEST_PG_URL"] = fx.read_url(pgdir)
        return fx, pgdir

    def pg_require_hub_support(self):
        """Skips (77) when this tether-hub has no PostgreSQL backend (no
        `init --db`)."""
        if self._pg_hub_ok is None:
            r = self.run([self.bin("tether-hub"), "init", "--help"], timeout=30)
            self._pg_hub_ok = "--db" in r.stdout + r.stderr
        if not self._pg_hub_ok:
            raise Skip("this tether-hub has no PostgreSQL backend (init --help lists no --db)")

    def _pg_drop_all(self):
        if not self._pg_dbs:
            return
        if self.keep:
            print("TETHER_KEEP=1: kept the databases %s on %s" % (", ".join(self._pg_dbs),
                                                                 self._pg[1]))
            return
        for name in self._pg_dbs:
            try:
                self.pg_rows(self.pg_url(), 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
            except Exception as e:  # keep cleaning the rest
                print("cleanup: cannot drop database %s: %s" % (name, e))
        self._pg_dbs = []

    # --- reporting ---------------------------------------------------------

    def _stamp(self):
        return "[%6.2fs]" % (time.monotonic() - self._t0)

    def note(self, msg):
        line = "%s %s" % (self._stamp(), msg)
        print("  " + line, flush=True)
        try:
            with open(self.cmd_log_path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def check(self, cond, msg, detail=None):
        """Records one assertion. Returns cond so callers can branch."""
        self.checks += 1
        if cond:
            print("ok   %s %s" % (self._stamp(), msg), flush=True)
        else:
            extra = "" if detail is None else ": %s" % (detail,)
            print("FAIL %s %s%s" % (self._stamp(), msg, extra), flush=True)
            self.failures.append(msg + extra)
        return bool(cond)

    def info(self, msg):
        print("info %s %s" % (self._stamp(), msg), flush=True)

    # --- running things ----------------------------------------------------

    def run(self, argv, stdin=None, timeout=60, env=None):
        """Runs a command to completion; output captured and logged."""
        t = time.monotonic()
        try:
            p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                               env=env or self.env, preexec_fn=_pdeathsig)
            r = Result(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - t)
        except subprocess.TimeoutExpired as e:
            r = Result(argv, -1, e.stdout or b"", (e.stderr or b"") +
                       b"\n[harness: timed out after %ds]" % timeout, time.monotonic() - t)
        except OSError as e:
            raise Fatal("cannot run %s: %s" % (argv[0], e))
        self._log_cmd(argv, r)
        return r

    def _log_cmd(self, argv, r):
        shown = " ".join(argv)
        if len(shown) > 400:
            shown = shown[:400] + "..."
        txt = "%s $ %s\n  rc=%s (%.2fs)\n" % (self._stamp(), shown, r.rc, r.elapsed)
        if r.out:
            txt += "  stdout: %s\n" % r.out[:2000].decode("utf-8", "replace").rstrip()
        if r.err:
            txt += "  stderr: %s\n" % r.err[:2000].decode("utf-8", "replace").rstrip()
        with open(self.cmd_log_path, "a") as f:
            f.write(txt)
        if self.verbose:
            sys.stdout.write(txt)

    def spawn(self, name, argv, env=None):
        return Proc(self, name, argv, env=env)

    def stop_daemons(self):
        """SIGTERMs the tether daemons still running and checks that they
        exit 0 (a sanitizer build exits non-zero on leaks)."""
        for p in reversed(self.procs):
            if p.daemon and p.alive():
                rc = p.stop(timeout=15)
                self.check(rc == 0, "%s exits 0 on SIGTERM (%s)" % (
                    p.name, os.path.basename(p.log_path)), "rc=%s" % rc)

    def outside_signal_notes(self):
        """Daemons that logged a signal, or died of one, that the harness had
        not sent: someone outside the test (pkill/killall by name?) hit them."""
        notes = []
        names = {"Terminated": 15, "Interrupt": 2, "Hangup": 1, "Killed": 9}
        pat = re.compile(r"\b(?:draining|stopping|shutdown)\b.*?\bsignal=(\w+)")
        for p in self.procs:
            if not p.daemon:
                continue
            text = p.text()
            for m in pat.finditer(text):
                v = m.group(1)
                sig = int(v) if v.isdigit() else names.get(v)
                pos = p._log_start + len(text[:m.start()].encode())
                ours = any(s_ == sig and off <= pos for s_, off in p.signals_sent)
                if sig is not None and not ours:
                    notes.append("%s logged signal=%s that this test had not sent (pid %d): "
                                 "something outside the test signalled it" % (
                                     os.path.basename(p.log_path), v, p.pid))
            rc = p.returncode()
            if rc is not None and rc < 0 and -rc not in [s_ for s_, _ in p.signals_sent]:
                notes.append("%s (pid %d) died of signal %d that this test never sent" % (
                    os.path.basename(p.log_path), p.pid, -rc))
        return notes

    def check_sanitizers(self):
        """Fails the test for any AddressSanitizer, LeakSanitizer or UBSan
        report in a daemon's log."""
        pat = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                         r"SUMMARY: (Address|Undefined|Leak)")
        for p in self.procs:
            if not p.daemon:
                continue
            m = pat.search(p.text())
            self.check(m is None, "no sanitizer report in %s" % os.path.basename(p.log_path),
                       m.group(0) if m else None)

    def curl(self, url, method=None, data=None, data_file=None, upload_stdin=None,
             headers=None, token=None, pin=None, http="1.1", out_file=None, timeout=30,
             extra=()):
        """One curl request. http: "1.1" or "2" (over TLS, ALPN). data: bytes
        or str sent with --data-binary; data_file: path sent with --data-binary
        @file; upload_stdin: bytes streamed with -T - (chunked on HTTP/1.1).
        Returns CurlResult (status 0 when no HTTP answer)."""
        hdr_file = tempfile.NamedTemporaryFile(dir=self.tmp, prefix="hdr-", delete=False)
        hdr_file.close()
        body_path = out_file or (hdr_file.name + ".body")
        argv = ["curl", "-q", "-sS", "-k", "-o", body_path, "-D", hdr_file.name,
                "-w", "%{http_code} %{http_version} %{size_download}", "--max-time", str(timeout)]
        argv.append("--http2" if http == "2" else "--http1.1")
        if pin:
            argv += ["--pinnedpubkey", pin]
        if token:
            argv += ["-H", "Authorization: Bearer %s" % token]
        for k, v in (headers or {}).items():
            argv += ["-H", "%s: %s" % (k, v)]
        stdin = None
        if data is not None:
            argv += ["--data-binary", "@-"]
            stdin = data.encode() if isinstance(data, str) else data
        elif data_file is not None:
            argv += ["--data-binary", "@" + data_file]
        elif upload_stdin is not None:
            argv += ["-T", "-"]
            stdin = upload_stdin
        if method:
            argv += ["-X", method]
        argv += list(extra)
        argv.append(url)
        r = self.run(argv, stdin=stdin, timeout=timeout + 15)
        status, version, size = 0, "", 0
        parts = r.stdout.split()
        if len(parts) >= 3 and parts[0].isdigit():
            status, version, size = int(parts[0]), parts[1], int(parts[2])
        headers_out = {}
        try:
            with open(hdr_file.name, "rb") as f:
                for line in f.read().decode("latin-1").splitlines():
                    if line.startswith("HTTP/"):
                        headers_out = {}  # keep only the last response's headers
                    elif ":" in line:
                        k, v = line.split(":", 1)
                        headers_out[k.strip().lower()] = v.strip()
            os.unlink(hdr_file.name)
        except OSError:
            pass
        body = None
        if out_file is None:
            try:
                with open(body_path, "rb") as f:
                    body = f.read()
                os.unlink(body_path)
            except OSError:
                body = b""
        return CurlResult(r.rc, status, version, headers_out, body, r.stderr, r.elapsed, size)

    # --- roles -------------------------------------------------------------

    def hub(self, name="hub", port=None):
        return Hub(self, name, port)

    def site(self, name, hub=None, dirname=None):
        return Site(self, name, hub, dirname)

    def service(self, name="svc", site_name="", port=None):
        return Service(self, name, site_name, port)

    def add_site(self, hub, name, services=None, site_args=(), timeout=15.0,
                 extra_services=None):
        """A sample service (svc-NAME) and the site NAME registered, enrolled
        and running it as "web" (or services instead, {name: url}) plus
        extra_services, online with its services within timeout. Returns
        (site, service); the enrollment token stays in site.enroll_token."""
        svc = self.service("svc-" + name, site_name=name)
        token = hub.site_add(name)
        site = self.site(name, hub)
        site.enroll(token)
        site.enroll_token = token
        site.start(dict(services or {"web": svc.url}, **(extra_services or {})), site_args)
        if hub.wait_ready(name, timeout) is None:
            raise Fatal("site %s not online with its services within %.0f s" % (name, timeout))
        return site, svc

    def setup(self, site_name="clinic-a", hub_args=(), site_args=(), services=None,
              test_clock=False, extra_services=None):
        """The common start: a hub (init+run) and add_site() of one site.
        Returns (hub, site, service)."""
        hub = self.hub()
        hub.init()
        hub.start(hub_args, test_clock=test_clock)
        site, svc = self.add_site(hub, site_name, services, site_args, 20,
                                  extra_services=extra_services)
        return hub, site, svc

    def hub_pair(self):
        """Hubs hub-a and hub-b of one cluster (PostgreSQL only: one
        database), both running. Returns (a, b)."""
        a = self.hub("hub-a")
        a.init()
        b = self.hub("hub-b")
        b.init(db=a.db_url)
        a.start()
        b.start()
        return a, b

    def cluster_pair(self, site_name, services, site_args=()):
        """hub_pair(), A's peer link to B up, and the site site_name enrolled
        with a token from B, which lists B first: the site connects there
        and offers services ({name: url}). Checks each step; returns
        (a, b, site)."""
        a, b = self.hub_pair()
        self.check(a.peer_link_up(b, "out") is not None and b.peer_link_up(a, "in") is not None,
                   "hub A holds its peer link to hub B")
        site = self.site(site_name, b)
        site.enroll(b.site_add(site_name))
        site.start(services, site_args)
        self.check(b.wait_ready(site_name) is not None, "the site connects to hub B")
        self.check(a.sites().get(site_name, {}).get("local") is False,
                   "hub A holds no tunnel of the site")
        return a, b, site

    # --- waiting -----------------------------------------------------------

    @staticmethod
    def wait_until(fn, timeout, interval=0.1):
        """Calls fn until it returns a truthy value or timeout; returns the
        last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v or time.monotonic() >= deadline:
                return v
            time.sleep(interval)

    # --- the end -----------------------------------------------------------

    def dump_logs(self, lines=60):
        paths = [p.log_path for p in self.procs] + [self.cmd_log_path]
        seen = set()
        for path in paths:
            if path in seen or not os.path.exists(path):
                continue
            seen.add(path)
            try:
                with open(path, "rb") as f:
                    data = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            print("----- tail of %s (%d of %d lines) -----" % (
                os.path.relpath(path, self.tmp), min(lines, len(data)), len(data)))
            for line in data[-lines:]:
                print("  | " + line[:400])
        sys.stdout.flush()

    def at_cleanup(self, fn):
        """Runs fn() at cleanup, after the daemons stopped and the test's
        databases were dropped (e.g. stopping a server the test started)."""
        self._at_cleanup.append(fn)

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        for p in reversed(self.procs):
            try:
                p.stop(timeout=3)
            except Exception as e:  # keep cleaning the rest
                print("cleanup of %s: %s" % (p.name, e))
        self._pg_drop_all()
        for fn in reversed(self._at_cleanup):
            try:
                fn()
            except Exception as e:  # keep cleaning the rest
                print("cleanup: %s" % e)
        if self.keep:
            print("TETHER_KEEP=1: kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def main(name, fn, progs=("tether-hub", "tether-site", "tetherctl"), tools=("curl",)):
        """Runs fn(h) with full cleanup; exits 0, 1 or 77."""

        def on_signal(signum, frame):
            raise SystemExit("killed by signal %d" % signum)

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, on_signal)
        h = Harness(name)
        code = 1
        try:
            try:
                h.require(*progs, tools=tools)
                print("== %s (TETHER_BIN=%s, tmp=%s)" % (name, h.bin_dir, h.tmp), flush=True)
                fn(h)
                h.stop_daemons()
                h.check_sanitizers()
                if h.checks == 0:
                    h.failures.append("the test made no checks")
                code = 1 if h.failures else 0
            except Skip as e:
                print("SKIP %s: %s" % (name, e), flush=True)
                code = SKIP
            except Fatal as e:
                h.failures.append("fatal: %s" % e)
                print("FAIL %s fatal: %s" % (h._stamp(), e), flush=True)
            except SystemExit as e:
                h.failures.append("interrupted: %s" % e)
                print("FAIL interrupted: %s" % e, flush=True)
            except BaseException:
                h.failures.append("exception")
                print("FAIL %s unexpected exception:" % h._stamp(), flush=True)
                traceback.print_exc(file=sys.stdout)
            if code != SKIP and h.failures:
                h.dump_logs()
                for n in h.outside_signal_notes():
                    print("NOTE " + n)
                code = 1
        finally:
            h.cleanup()
        if code == 0:
            print("PASS %s (%d checks)" % (name, h.checks))
        elif code == 1:
            print("FAILED %s: %d of %d checks failed" % (name, len(h.failures), h.checks))
            for f in h.failures:
                print("  - " + f)
        sys.stdout.flush()
        os._exit(code)

# Firewall lab: network namespaces, veth pairs and nftables around real tether processes.
# SPDX-License-Identifier: MIT
"""A small network made of Linux network namespaces, for tests/lab/test_*.py.

    hub  (10.77.1.1, "hub.lab"; add_hub_ip() adds 10.77.1.2, "hub2.lab", for a
     |  veth                     second hub of a cluster)
    router  ("the network team": 10.77.1.254 / 10.77.2.254 / 10.77.3.254,
     |   \\    chain inet netteam forward, table ip netteam_nat; tests change them)
     |    \\
    site1  site2   (10.77.2.1, 10.77.3.1; each with its own stateful firewall:
                    inbound only ct state established,related; outbound open)

Every address lives only inside these namespaces: nothing leaves the machine.
Names are tlab<PID>-<role>; the lab deletes its namespaces and
/etc/netns/<name>/ (hosts, resolv.conf) at exit, and deletes leftovers of
earlier runs whose process is gone. Needs root, `ip` (iproute2) and `nft`
(nftables); without them a test exits 77 (skipped) with the reason.

A test does:

    from lab import LabHarness
    def main(h):
        lab = h.lab()                       # the network
        hub = h.hub(); hub.init(); hub.start()
        site = h.site("site1", "s-a", hub); site.enroll(hub.site_add("s-a")); site.start(...)
    LabHarness.main("name", main)
"""

import calendar
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from harness import (Fatal, Harness, Hub, Proc, Service, Site, Skip,  # noqa: E402,F401
                     edit_conf, read_conf, openssl_pin)

NS_PREFIX = "tlab"
HUB_IP = "10.77.1.1"
HUB2_IP = "10.77.1.2"  # a second hub's address on the hub's eth0 (Lab.add_hub_ip)
ROUTER_HUB_IP = "10.77.1.254"
SITE_IPS = {"site1": "10.77.2.1", "site2": "10.77.3.1"}
ROUTER_SITE_IPS = {"site1": "10.77.2.254", "site2": "10.77.3.254"}
HUB_NAME = "hub.lab"
HUB2_NAME = "hub2.lab"
PROXY_NAME = "proxy.lab"

SITE_FIREWALL = """
table inet sitefw {
    counter inbound_dropped { }
    chain input {
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        counter name "inbound_dropped" drop
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
    }
    chain output {
        type filter hook output priority filter; policy accept;
    }
}
"""

ROUTER_RULES = """
table inet netteam {
    counter dropped { }
    chain forward {
        type filter hook forward priority filter; policy accept;
    }
}
table ip netteam_nat {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
    }
}
"""


def _run(argv, check=True, timeout=30, input=None):
    p = subprocess.run(argv, capture_output=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise Fatal("%s failed (rc=%d): %s" % (" ".join(argv), p.returncode,
                                               p.stderr.decode("utf-8", "replace").strip()))
    return p


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _list_netns():
    p = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.decode().splitlines() if line.strip()]


def _delete_ns(name):
    _run(["ip", "netns", "del", name], check=False)
    d = os.path.join("/etc/netns", name)
    if os.path.isdir(d):
        shutil.rmtree(d, ignore_errors=True)


def cleanup_leftovers():
    """Deletes the namespaces of earlier lab runs whose process is gone."""
    pat = re.compile(r"^%s(\d+)-" % NS_PREFIX)
    for name in _list_netns():
        m = pat.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _delete_ns(name)
    if os.path.isdir("/etc/netns"):
        for name in os.listdir("/etc/netns"):
            m = pat.match(name)
            if m and not _pid_alive(int(m.group(1))):
                shutil.rmtree(os.path.join("/etc/netns", name), ignore_errors=True)


def lab_support():
    """None when the lab can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the firewall lab needs root (network namespaces and nftables)"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if not shutil.which(tool):
            return "%s not found (Debian package %s; deploy/setup.sh installs it)" % (tool, pkg)
    probe = "%s%d-probe" % (NS_PREFIX, os.getpid())
    p = _run(["ip", "netns", "add", probe], check=False)
    if p.returncode != 0:
        return "cannot create a network namespace: %s" % p.stderr.decode().strip()
    try:
        p = _run(["ip", "netns", "exec", probe, "nft", "-f", "-"], check=False,
                 input=b"table inet probe { chain c { type filter hook input priority 0; "
                       b"ct state established accept; }; }\n")
        if p.returncode != 0:
            return "nftables with conntrack does not work here: %s" % p.stderr.decode().strip()
    finally:
        _delete_ns(probe)
    return None


class Lab:
    """The namespaces and their plumbing. Roles: hub, router, site1, site2."""

    ROLES = ("hub", "router", "site1", "site2")

    def __init__(self, h):
        self.h = h
        self.tag = "%s%d" % (NS_PREFIX, os.getpid())
        self.ns = {r: "%s-%s" % (self.tag, r) for r in self.ROLES}
        self.up = False
        self.ip = dict(SITE_IPS, hub=HUB_IP)
        self.router_ip = dict(ROUTER_SITE_IPS, hub=ROUTER_HUB_IP)

    # --- commands ----------------------------------------------------------

    def argv(self, role, argv):
        return ["ip", "netns", "exec", self.ns[role]] + list(argv)

    def sh(self, role, *argv, check=True, input=None, timeout=30):
        """Runs a command in a namespace, logged in commands.log."""
        r = self.h.run(self.argv(role, argv), stdin=input, timeout=timeout, env=self.h.env)
        if check and r.rc != 0:
            raise Fatal("[%s] %s failed: %r" % (role, " ".join(argv), r))
        return r

    def nft(self, role, text):
        return self.sh(role, "nft", "-f", "-", input=text.encode())

    def sysctl(self, role, key, value):
        path = "/proc/sys/" + key.replace(".", "/")
        self.sh(role, "sh", "-c", "echo %s > %s" % (value, path))

    # --- building and tearing down ----------------------------------------

    def create(self):
        cleanup_leftovers()
        for role in self.ROLES:
            _delete_ns(self.ns[role])
        self.up = True  # from here on, teardown has something to do
        for role in self.ROLES:
            _run(["ip", "netns", "add", self.ns[role]])
            d = os.path.join("/etc/netns", self.ns[role])
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write("127.0.0.1 localhost\n::1 localhost\n%s %s\n%s %s\n%s %s\n" % (
                    HUB_IP, HUB_NAME, HUB2_IP, HUB2_NAME, ROUTER_SITE_IPS["site1"], PROXY_NAME))
            # No real resolver inside: names outside hosts fail at once, and
            # no query ever leaves the namespace.
            with open(os.path.join(d, "resolv.conf"), "w") as f:
                f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            self.sh(role, "ip", "link", "set", "lo", "up")
        r = self.ns["router"]
        for role, ifname in (("hub", "r-hub"), ("site1", "r-s1"), ("site2", "r-s2")):
            _run(["ip", "-n", r, "link", "add", ifname, "type", "veth", "peer", "name", "eth0",
                  "netns", self.ns[role]])
            self.sh("router", "ip", "addr", "add", self.router_ip[role] + "/24", "dev", ifname)
            self.sh("router", "ip", "link", "set", ifname, "up")
            self.sh(role, "ip", "addr", "add", self.ip[role] + "/24", "dev", "eth0")
            self.sh(role, "ip", "link", "set", "eth0", "up")
            self.sh(role, "ip", "route", "add", "default", "via", self.router_ip[role])
        self.sysctl("router", "net.ipv4.ip_forward", 1)
        for role in ("site1", "site2"):
            self.nft(role, SITE_FIREWALL)
        self.nft("router", ROUTER_RULES)
        self.h.note("lab up: namespaces %s" % ", ".join(self.ns.values()))

    def teardown(self):
        if not self.up:
            return
        self.up = False
        for role in self.ROLES:
            _delete_ns(self.ns[role])

    # --- knobs the tests turn ----------------------------------------------

    def add_hub_ip(self, ip=HUB2_IP):
        """A second address on the hub's eth0 (HUB2_IP is "hub2.lab" in every
        namespace's hosts), for a second hub listening there: sites reach it
        through the router like the first; hub to hub stays inside."""
        self.sh("hub", "ip", "addr", "add", ip + "/24", "dev", "eth0")

    def set_conntrack_timeout(self, seconds, roles=("site1", "site2", "router")):
        """nf_conntrack_tcp_timeout_established of the stateful boxes."""
        for role in roles:
            self.sysctl(role, "net.netfilter.nf_conntrack_tcp_timeout_established", seconds)

    def netteam(self, *rules):
        """Replaces the router's forward rules (the network team's policy)."""
        self.sh("router", "nft", "flush", "chain", "inet", "netteam", "forward")
        for rule in rules:
            self.sh("router", "sh", "-c", "nft add rule inet netteam forward " + rule)
        self.h.note("router rules: %s" % (list(rules) or "accept all"))

    def netteam_nat(self, *rules):
        self.sh("router", "nft", "flush", "chain", "ip", "netteam_nat", "prerouting")
        for rule in rules:
            self.sh("router", "sh", "-c", "nft add rule ip netteam_nat prerouting " + rule)

    def slow_path(self, role, delay_ms):
        """Adds delay_ms to the round trip between the hub and a site host, on
        the router: tc netem where the kernel has it, else a TUN delay line
        (tests/lab/delayline.py). Returns which one."""
        ifname = {"site1": "r-s1", "site2": "r-s2"}[role]
        r = self.sh("router", "tc", "qdisc", "add", "dev", ifname, "root", "netem", "delay",
                    "%dms" % delay_ms, check=False)
        if r.rc == 0:
            return "tc netem"
        tun = "dl-" + role
        p = self.h.spawn("delayline-" + role, [sys.executable, self.h.script("delayline.py"), tun,
                                               str(delay_ms)], role="router")
        p.wait_log(r"^ready$", 10)
        self.sh("router", "ip", "link", "set", tun, "mtu", "65000", "up")
        for k in ("all", "default", tun):
            self.sysctl("router", "net.ipv4.conf.%s.rp_filter" % k, 0)
        # Packets from the site go round through the delay line; what comes
        # back out of it is routed on by the main table.
        self.sh("router", "ip", "rule", "add", "iif", ifname, "lookup", "100", "pref", "100")
        self.sh("router", "ip", "route", "add", "default", "dev", tun, "table", "100")
        return "TUN delay line (no sch_netem in this kernel)"

    def counter(self, role, table, name):
        """Packets counted by a named nft counter."""
        family = "inet"
        r = self.sh(role, "nft", "list", "counter", family, table, name)
        m = re.search(r"packets (\d+)", r.stdout)
        return int(m.group(1)) if m else -1

    def tcp_connect(self, role, ip, port, timeout=2.0):
        """Tries a TCP connection from a namespace: "ok", "timeout" or the error."""
        code = ("import socket,sys\n"
                "s=socket.socket()\n"
                "s.settimeout(%f)\n"
                "try:\n"
                "    s.connect((%r,%d)); print('ok')\n"
                "except socket.timeout: print('timeout')\n"
                "except OSError as e: print(e.strerror or str(e))\n" % (timeout, ip, port))
        r = self.sh(role, sys.executable, "-c", code, check=False, timeout=timeout + 20)
        return r.stdout.strip()

    def sockets(self, role, filt):
        """`ss -tan FILTER` lines in a namespace (without the header)."""
        r = self.sh(role, "ss", "-Htan", *filt.split(), check=False)
        return [line for line in r.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# tether roles inside namespaces


class LabHub(Hub):
    """The hub in the hub namespace, listening on `ports` of every address
    (or of `ip` only), enrolling sites with PUBLIC_NAME:PORT for each."""

    def __init__(self, h, name="hub", ports=(6443,), ip=None, public_name=HUB_NAME):
        super().__init__(h, name, port=ports[0])
        self.ports = list(ports)
        self.lab = h.lab()
        self.ip = ip
        self.public_name = public_name

    @property
    def addr(self):
        return "%s:%d" % (self.ip or "127.0.0.1", self.port)

    @property
    def url(self):
        return "https://%s" % self.addr

    def init(self, extra=(), db=None):
        """db: a PostgreSQL URL (init --db; a second hub on it joins the
        cluster), else STATE/hub.db."""
        argv = [self.h.bin("tether-hub"), "init", "--state", self.dir, "--name", self.public_name]
        for p in self.ports:
            argv += ["--public", "%s:%d" % (self.public_name, p)]
        if db is not None:
            argv += ["--db", db]
            self.db_url = db
        r = self.h.run(argv + list(extra), timeout=60)
        if r.rc != 0:
            raise Fatal("tether-hub init failed: %r" % r)
        self.conf = read_conf(self.ctl_conf)
        self.pin = self.conf["hub_pin"][-1]
        self.token = self.conf["token"][-1]
        return r

    def start(self, extra=(), wait=True, timeout=15.0):
        argv = [self.h.bin("tether-hub"), "run", "--state", self.dir]
        for p in self.ports:
            argv += ["--listen", "%s:%d" % (self.ip or "0.0.0.0", p)]
        self.proc = Proc(self.h, self.name, self.lab.argv("hub", argv + list(extra)), daemon=True)
        if wait:
            self.proc.wait_log(r"\bhub_started\b|\blistening\b", timeout)
            # Every listener up before sites dial.
            deadline = time.monotonic() + timeout
            while len(re.findall(r"\blistening\b", self.proc.text())) < len(self.ports):
                if time.monotonic() > deadline:
                    raise Fatal("hub did not listen on all of %s" % self.ports)
                time.sleep(0.05)
        return self.proc

    def revoke(self, site):
        return self.api("POST", "/v1/sites/%s/revoke" % site)


class LabSite(Site):
    """A tether-site in the site1 or site2 namespace."""

    def __init__(self, h, role, name, hub=None):
        super().__init__(h, name, hub)
        self.role = role
        self.lab = h.lab()

    def enroll(self, token, extra=(), check=True):
        r = self.h.run(self.lab.argv(self.role, [self.h.bin("tether-site"), "enroll", "--state",
                                                 self.dir] + list(extra) + ["-"]),
                       stdin=(token + "\n").encode(), timeout=60)
        if check and r.rc != 0:
            raise Fatal("tether-site enroll %s failed: %r" % (self.name, r))
        return r

    def start(self, services, extra=(), wait=True, timeout=15.0, daemon=True):
        argv = [self.h.bin("tether-site"), "run", "--state", self.dir]
        for k, v in services.items():
            argv += ["--service", "%s=%s" % (k, v)]
        self.proc = Proc(self.h, "site-" + self.name, self.lab.argv(self.role, argv + list(extra)),
                         daemon=daemon)
        if wait:
            self.proc.wait_log(r"\bconnected hub=", timeout)
        return self.proc

    def doctor(self, *extra, timeout=90):
        return self.h.run(self.lab.argv(self.role, [self.h.bin("tether-site"), "doctor",
                                                    "--state", self.dir] + list(extra)),
                          timeout=timeout)


class LabService(Service):
    """deploy/sample-service.py inside a site namespace."""

    def __init__(self, h, role, name="svc", site_name="", port=8080, bind="127.0.0.1"):
        self.h = h
        self.port = port
        self.role = role
        self.bind = bind
        argv = [sys.executable, os.path.join(h.src_dir, "deploy", "sample-service.py"),
                "--bind", bind, str(port)]
        if site_name:
            argv += ["--name", site_name]
        self.proc = Proc(h, name, h.lab().argv(role, argv))
        self.proc.wait_log(r"^listening %d$" % port, 15)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port


class LabHarness(Harness):
    """Harness whose commands run in the hub namespace unless told otherwise
    (tetherctl and curl act as the hub's users)."""

    def __init__(self, name):
        super().__init__(name)
        self._lab = None

    def lab(self):
        if self._lab is None:
            self._lab = Lab(self)
            self._lab.create()
        return self._lab

    def run(self, argv, stdin=None, timeout=60, env=None):
        if self._lab is not None and self._lab.up and argv and argv[0] != "ip":
            argv = self._lab.argv("hub", argv)
        return super().run(argv, stdin=stdin, timeout=timeout, env=env)

    def spawn(self, name, argv, role="hub", env=None, daemon=False):
        return Proc(self, name, self.lab().argv(role, argv), env=env, daemon=daemon)

    def hub(self, name="hub", ports=(6443,), ip=None, public_name=HUB_NAME):
        return LabHub(self, name, ports, ip, public_name)

    def site(self, role, name, hub=None):
        return LabSite(self, role, name, hub)

    def service(self, role, name="svc", site_name="", port=8080, bind="127.0.0.1"):
        return LabService(self, role, name, site_name, port, bind)

    def script(self, name):
        return os.path.join(HERE, name)

    def pg_in_hub(self):
        """A PostgreSQL server of the test's own inside the hub namespace
        (tests/pg/pgfixture.py there: 127.0.0.1 of that namespace, which the
        hubs and psql through run() reach, and no site does), stopped at
        cleanup. Returns the URL of a new database on it for LabHub.init(db=).
        Skips (77) without the server programs or without a hub built with
        PostgreSQL support."""
        fx = harness.load_pgfixture()
        try:
            fx.bin_dir()
        except fx.Error as e:
            raise Skip(str(e))
        self.pg_require_hub_support()
        lab = self.lab()
        pgdir = self.path("pg")
        os.makedirs(pgdir)
        script = os.path.join(HERE, "..", "pg", "pgfixture.py")
        self.at_cleanup(lambda: lab.sh("hub", sys.executable, script, "stop", pgdir, check=False,
                                       timeout=180))
        lab.sh("hub", sys.executable, script, "start", pgdir, timeout=180)
        os.environ["TETHER_TEST_PG_URL"] = fx.read_url(pgdir)
        self.db_backend = "pg"
        return self.pg_create_db("cluster")

    def cleanup(self):
        try:
            super().cleanup()
        finally:
            if self._lab is not None:
                self._lab.teardown()

    @staticmethod
    def main(name, fn, progs=("tether-hub", "tether-site", "tetherctl"), tools=("curl",)):
        """Harness.main with this harness; exits 0, 1 or 77 (also when the
        machine cannot run the lab)."""
        why = lab_support()
        if why is not None:
            print("SKIP %s: %s" % (name, why), flush=True)
            os._exit(harness.SKIP)
        # Harness.main builds its harness from the module's name at call time.
        base = harness.Harness
        harness.Harness = LabHarness
        base.main(name, fn, progs, tools)


def wait_until(fn, timeout, interval=0.1):
    return Harness.wait_until(fn, timeout, interval)


def query_engine(hub):
    """True when the hub serves POST /v1/queries (the query engine landed)."""
    r = hub.api("POST", "/v1/queries", {"sites": [], "service": "x", "path": "/"})
    return r.status not in (404, 405, 0)


def query_result(hub, qid, site, wait=5):
    """The per-site result of a federated query (GET ?wait=), or None."""
    r = hub.curl("/v1/queries/%s?wait=%d" % (qid, wait), timeout=wait + 15)
    for x in (r.json() or {}).get("sites") or []:
        if isinstance(x, dict) and x.get("site") == site:
            return x
    return None


def log_times(proc, regex, since=0):
    """Timestamps (epoch seconds) of the log lines matching regex."""
    out = []
    for line in proc.text(since).splitlines():
        if re.search(regex, line):
            m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z", line)
            if m:
                out.append(_parse_ts(m.group(1)))
    return out


def _parse_ts(s):
    if "." in s:
        base, frac = s.split(".")
    else:
        base, frac = s, "0"
    t = time.strptime(base, "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) + float("0." + frac)


__all__ = ["LabHarness", "Lab", "Fatal", "Skip", "HUB_NAME", "HUB_IP", "HUB2_NAME", "HUB2_IP",
           "SITE_IPS",
           "ROUTER_SITE_IPS", "ROUTER_HUB_IP", "edit_conf", "read_conf", "openssl_pin",
           "wait_until", "query_engine", "query_result", "log_times"]

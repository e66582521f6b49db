#!/usr/bin/env python3
# Attack: silent connects while the descriptor reserve is in use must not evict a site's tunnel handshake.
# SPDX-License-Identifier: MIT
"""The hub's descriptors (limit lowered with prlimit) are filled with idle
user connections, so every new connection lands in the descriptor reserve.
Held means:
- a connection over its address's pending-handshake cap is refused without
  evicting anyone: earlier silent reserve members from another address stay;
- a site tunnel whose tether/1 ClientHello is in (its handshake stalled)
  survives a flood of silent connects from many addresses, which evict only
  each other;
- a site whose agent restarts during such a flood gets its tunnel back, and
  a user connected before the attack is served through it;
- when every reserve slot is a handshaking tunnel, a newcomer is refused and
  none of them is cut."""
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness  # noqa: E402
import idleconn as ic  # noqa: E402

NOFILE = 160
RESERVE = 16  # half of it (8) may be handshaking in the reserve
PENDING = 3  # max_pending_handshakes_per_ip


def raw(port, src, data=b""):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    if data:
        s.sendall(data)
    return s


def alive(s, wait=0.5):
    """False once the hub has closed s (EOF or reset); reads what it sent."""
    s.settimeout(wait)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return False
    except socket.timeout:
        return True
    except OSError:
        return False


class Flood(threading.Thread):
    """Silent connects, one per source address, `rate` a second."""

    def __init__(self, port, net, rate):
        super().__init__(daemon=True)
        self.port, self.net, self.rate = port, net, rate
        self.stop = False
        self.socks = []

    def run(self):
        i = 0
        while not self.stop:
            try:
                self.socks.append(raw(self.port, "127.0.%d.%d" % (self.net, 1 + i % 250)))
            except OSError:
                pass
            i += 1
            time.sleep(1.0 / self.rate)

    def release(self):
        self.stop = True
        self.join(10)
        for s in self.socks:
            s.close()


def main(h):
    ic.raise_nofile()
    conf = {"fd_reserve": RESERVE, "max_user_conns_per_ip": 1000,
            "max_pending_handshakes_per_ip": PENDING, "handshake_timeout": 50,
            "request_head_timeout": 600, "idle_timeout": 600}
    hub = ic.start_hub(h, conf, NOFILE)
    site, svc = h.add_site(hub, "s1")
    port = hub.port
    early = ic.KeepAlive.open(port, src="127.0.0.5")
    st, _ = early.get("/v1/sites/s1/services/web/echo?before=1", hub.token)
    h.check(st == 200, "a user connected before the attack is served", st)

    fill = []
    for i in range(NOFILE):
        c = ic.open_conn(port, "nothing", src="127.0.3.%d" % (1 + i // 50))
        if c is None:
            break
        fill.append(c)
    h.info("%d idle user connections fill the users' share" % len(fill))
    st, _ = ic.https_get(port, "/healthz", src="127.0.0.7", timeout=5)
    h.check(len(fill) > NOFILE // 2 and st == 0,
            "the users' share is full: a new user is refused (reserve in use)", st)

    hello = ic.client_hello(("tether/1",))
    victim = raw(port, "127.0.9.9", hello)
    time.sleep(0.3)
    # The reserve's handshaking half (8): the tunnel, 4 silent connections,
    # and the first PENDING of the address below.
    innocent = [raw(port, "127.0.7.1") for _ in range(PENDING)]
    innocent += [raw(port, "127.0.7.2") for _ in range(RESERVE // 2 - 1 - 2 * PENDING)]
    time.sleep(0.3)
    # One address, far over its pending cap: refused at once, evicting no one.
    capped = []
    for _ in range(12):
        try:
            capped.append(raw(port, "127.0.8.1"))
        except OSError:
            pass
        time.sleep(0.02)
    time.sleep(0.3)
    n_alive = sum(alive(s, 0.1) for s in innocent)
    h.check(n_alive == len(innocent),
            "connections refused by the pending cap evict no one (%d of %d silent reserve "
            "members still open)" % (n_alive, len(innocent)))
    h.check(alive(victim), "... and the handshaking site tunnel is still open")

    # Silent connects from many addresses: they evict each other, never the tunnel.
    flood = Flood(port, 6, 200)
    flood.start()
    time.sleep(2.0)
    h.check(alive(victim), "a handshaking site tunnel survives %d silent connects from many "
            "addresses" % len(flood.socks))

    # The site's agent restarts during the flood.
    mark = hub.proc.mark()
    site.proc.kill9()
    site.start({"web": svc.url}, wait=False)
    m = hub.proc.wait_log(r"\bsite_connected\b.*\bsite=s1\b", 25, since=mark, fatal=False)
    h.check(m is not None, "a restarting site gets its tunnel back during the flood")
    ok = False
    for _ in range(30):
        st, _ = early.get("/v1/sites/s1/services/web/echo?during=1", hub.token)
        if st == 200:
            ok = True
            break
        time.sleep(0.5)
    h.check(ok, "... and the user connected before the attack is served through it")
    flood.release()
    h.check(alive(victim), "the handshaking site tunnel is still open after the flood")

    # Every reserve slot a handshaking tunnel: a newcomer is refused, none cut.
    time.sleep(0.5)
    tunnels = [victim] + [raw(port, "127.0.10.%d" % (1 + i), hello) for i in range(RESERVE // 2 - 1)]
    time.sleep(0.5)
    newcomer = raw(port, "127.0.11.1")
    h.check(not alive(newcomer, 3), "with the reserve full of handshaking tunnels, a newcomer is "
            "refused")
    n_alive = sum(alive(s, 0.1) for s in tunnels)
    h.check(n_alive == len(tunnels), "... and none of the %d tunnels was cut (%d open)"
            % (len(tunnels), n_alive))

    for s in tunnels + innocent + capped + [newcomer]:
        s.close()
    for c in fill:
        c.sock.close()
    early.close()


if __name__ == "__main__":
    Harness.main("fd_reserve", main)

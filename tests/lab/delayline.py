#!/usr/bin/env python3
# Lab helper: a slow link without tc netem; routes packets through a TUN device and hands them back late.
# SPDX-License-Identifier: MIT
"""Usage: delayline.py TUN_NAME DELAY_MS

Run in the router namespace. Creates TUN_NAME, prints "ready", then every
IP packet the kernel routes into it is written back into it DELAY_MS later,
so the kernel forwards it on as if it had crossed a slow link. The caller
steers traffic in with policy routing (ip rule iif X lookup T; ip route add
default dev TUN_NAME table T). Used where the kernel lacks sch_netem.
Stops on SIGTERM; the device goes with it."""
import fcntl
import heapq
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main():
    name, delay = sys.argv[1], int(sys.argv[2]) / 1000.0
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("ready", flush=True)
    queue = []  # (release time, seq, packet)
    seq = 0
    while True:
        timeout = None
        if queue:
            timeout = max(0.0, queue[0][0] - time.monotonic())
        r, _, _ = select.select([fd], [], [], timeout)
        if r:
            pkt = os.read(fd, 65536)
            heapq.heappush(queue, (time.monotonic() + delay, seq, pkt))
            seq += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, pkt = heapq.heappop(queue)
            try:
                os.write(fd, pkt)
            except OSError:
                pass


if __name__ == "__main__":
    main()

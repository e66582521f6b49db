#!/usr/bin/env python3
# Lab helper: records the TCP payload bytes crossing a namespace's interfaces (AF_PACKET), to look for plaintext.
# SPDX-License-Identifier: MIT
"""Usage: sniff.py OUTFILE [CAP_BYTES]

Run inside a namespace (ip netns exec NS sniff.py ...). Appends the payload
of every IPv4 TCP segment seen on any interface of that namespace to
OUTFILE, up to CAP_BYTES (default 64 MiB), and prints "sniffing" once
ready. Stops on SIGTERM."""
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003


def main():
    path = sys.argv[1]
    cap = int(sys.argv[2]) if len(sys.argv) > 2 else 64 << 20
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    total = 0
    with open(path, "wb", buffering=0) as out:
        print("sniffing", flush=True)
        while True:
            pkt = s.recv(65536)
            if len(pkt) < 14 + 20 or struct.unpack("!H", pkt[12:14])[0] != 0x0800:
                continue
            ip = pkt[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 6 or len(ip) < ihl + 20:
                continue
            total_len = struct.unpack("!H", ip[2:4])[0]
            tcp = ip[ihl:total_len]
            if len(tcp) < 20:
                continue
            doff = (tcp[12] >> 4) * 4
            payload = tcp[doff:]
            if payload and total < cap:
                out.write(payload[:cap - total])
                total += len(payload)


if __name__ == "__main__":
    main()

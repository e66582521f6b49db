#!/usr/bin/env python3
# Lab helper: a TLS-inspecting middlebox; terminates TLS with its own CA-issued certificate and re-originates to the real server.
# SPDX-License-Identifier: MIT
"""Usage: intercept.py LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT CERT KEY

Run in the router namespace behind an nft `redirect to :LISTEN_PORT` rule,
like a transparent inspection proxy. For each client: TLS handshake with
CERT/KEY (offering the client's usual ALPN names), then a TLS connection to
UPSTREAM and a plaintext relay between the two. Logs one line per event on
stdout: "listening", "client ADDR handshake failed: ...", "client ADDR
intercepted, upstream ...". Stops on SIGTERM."""
import signal
import socket
import ssl
import sys
import threading


def relay(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


def handle(conn, addr, sctx, up_host, up_port):
    who = "%s:%d" % addr
    try:
        tls = sctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print("client %s handshake failed: %s" % (who, e), flush=True)
        conn.close()
        return
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    if tls.selected_alpn_protocol():
        cctx.set_alpn_protocols([tls.selected_alpn_protocol()])
    try:
        raw = socket.create_connection((up_host, up_port), timeout=10)
        up = cctx.wrap_socket(raw, server_hostname=up_host)
        up.settimeout(None)
    except (ssl.SSLError, OSError) as e:
        print("client %s intercepted, upstream failed: %s" % (who, e), flush=True)
        tls.close()
        return
    print("client %s intercepted, upstream %s:%d alpn=%s" % (who, up_host, up_port,
                                                             tls.selected_alpn_protocol()),
          flush=True)
    threading.Thread(target=relay, args=(tls, up), daemon=True).start()
    relay(up, tls)


def main():
    port, up_host, up_port, cert, key = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                         sys.argv[4], sys.argv[5])
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.set_alpn_protocols(["tether/1", "h2", "http/1.1"])
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    print("listening %d" % port, flush=True)
    while True:
        conn, addr = srv.accept()
        threading.Thread(target=handle, args=(conn, addr, sctx, up_host, up_port),
                         daemon=True).start()


if __name__ == "__main__":
    main()

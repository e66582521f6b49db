#!/usr/bin/python3
# Bench peers: TCP sink/source, WebSocket and gRPC echo servers, and their load clients.
# SPDX-License-Identifier: MIT
"""Run by tests/bench/run as separate processes (so each one's CPU is counted
on its own), with Debian's /usr/bin/python3 (python3-websockets,
python3-grpcio). Clients print one JSON line with their figures.

    peers.py tcp-serve PORT
    peers.py tcp-client PORT down|up BYTES
    peers.py ws-serve PORT
    peers.py ws-client URL --conns N --msgs M --size S [--token T] [--cafile F]
    peers.py grpc-serve PORT
    peers.py grpc-client HOST:PORT METHOD --conns N --calls M [--token T] [--root F]
"""
import argparse
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time

if "/usr/lib/python3/dist-packages" not in sys.path:
    sys.path.append("/usr/lib/python3/dist-packages")

CHUNK = 1 << 20


def pct(vals, p):
    if not vals:
        return None
    vals = sorted(vals)
    k = max(0, min(len(vals) - 1, int(round(p / 100.0 * len(vals) + 0.5)) - 1))
    return vals[k]


# --- TCP: a 9-byte header (b"D" or b"U", 8-byte big-endian size), then the bytes ---

def _recv_exact(s, n):
    b = b""
    while len(b) < n:
        x = s.recv(n - len(b))
        if not x:
            return None
        b += x
    return b


def _tcp_conn(s):
    try:
        hdr = _recv_exact(s, 9)
        if hdr is None:
            return
        op, size = hdr[:1], struct.unpack(">Q", hdr[1:])[0]
        if op == b"D":
            buf = memoryview(os.urandom(CHUNK))
            left = size
            while left > 0:
                left -= s.send(buf[:min(left, CHUNK)])
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        elif op == b"U":
            got = 0
            buf = bytearray(CHUNK)
            while got < size:
                n = s.recv_into(buf)
                if not n:
                    break
                got += n
            s.sendall(struct.pack(">Q", got))
    except OSError:
        pass
    finally:
        s.close()


def tcp_serve(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=_tcp_conn, args=(s,), daemon=True).start()


def tcp_client(port, kind, size):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    t0 = time.monotonic()
    moved = 0
    if kind == "down":
        s.sendall(b"D" + struct.pack(">Q", size))
        buf = bytearray(CHUNK)
        while True:
            n = s.recv_into(buf)
            if not n:
                break
            moved += n
        stored = moved
    else:
        s.sendall(b"U" + struct.pack(">Q", size))
        buf = memoryview(os.urandom(CHUNK))
        while moved < size:
            moved += s.send(buf[:min(size - moved, CHUNK)])
        ack = _recv_exact(s, 8)
        stored = struct.unpack(">Q", ack)[0] if ack else -1
    secs = time.monotonic() - t0
    s.close()
    print(json.dumps({"bytes": moved, "stored_bytes": stored, "seconds": secs}))


# --- WebSocket echo ---

def ws_serve(port):
    import asyncio
    import websockets

    async def echo(ws, path=None):
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.ConnectionClosed:
            pass

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(websockets.serve(echo, "127.0.0.1", port, max_size=None,
                                             ping_interval=None, compression=None))
    loop.run_forever()


def ws_client(a):
    import asyncio
    import websockets

    ctx = None
    if a.url.startswith("wss:"):
        ctx = ssl.create_default_context(cafile=a.cafile)
        ctx.check_hostname = False
    hdrs = [("Authorization", "Bearer " + a.token)] if a.token else []
    rtts, errors = [], []
    msg = os.urandom(a.size)

    state = {"ready": 0}

    async def one(start):
        try:
            async with websockets.connect(a.url, ssl=ctx, extra_headers=hdrs, compression=None,
                                          ping_interval=None, max_size=None,
                                          open_timeout=30) as ws:
                await ws.send(msg)  # warm-up, not counted
                await ws.recv()
                state["ready"] += 1
                await start.wait()
                for _ in range(a.msgs):
                    t = time.perf_counter()
                    await ws.send(msg)
                    back = await ws.recv()
                    rtts.append(time.perf_counter() - t)
                    if back != msg:
                        errors.append("echo differs")
                        return
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            errors.append("%s: %s" % (type(e).__name__, e))
            state["ready"] += 1

    async def main():
        start = asyncio.Event()
        tasks = [asyncio.ensure_future(one(start)) for _ in range(a.conns)]
        # The clock starts once every socket is open and warm.
        while state["ready"] < a.conns:
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - t0

    secs = asyncio.new_event_loop().run_until_complete(main())
    out = {"msgs": len(rtts), "seconds": secs, "conns": a.conns, "size": a.size,
           "errors": len(errors)}
    if rtts and secs > 0:
        out.update(rate=len(rtts) / secs, p50_ms=pct(rtts, 50) * 1e3, p99_ms=pct(rtts, 99) * 1e3)
    if errors:
        out["error"] = errors[0][:300]
    print(json.dumps(out))


# --- gRPC unary echo (raw bytes, no protobuf) ---

def grpc_serve(port):
    from concurrent import futures

    import grpc
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    server.wait_for_termination()


def grpc_client(a):
    import grpc
    meta = (("authorization", "Bearer " + a.token),) if a.token else ()
    rtts, errors = [], []
    lock = threading.Lock()
    go = threading.Barrier(a.conns + 1)
    payload = os.urandom(a.size)

    def worker():
        if a.root:
            with open(a.root, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            ch = grpc.secure_channel(a.target, creds, options=(
                ("grpc.ssl_target_name_override", "127.0.0.1"),))
        else:
            ch = grpc.insecure_channel(a.target)
        call = ch.unary_unary(a.method)
        mine = []
        try:
            # Warm-up: connect, TLS, h2. wait_for_ready rides out a failed
            # first connect (gRPC would fail fast, then the whole channel:
            # seen once in an ASan CI run); the timed calls below do not.
            call(payload, metadata=meta, timeout=30, wait_for_ready=True)
        except grpc.RpcError as e:
            errors.append("warm-up: %s" % e.code())
        go.wait()
        for _ in range(a.calls):
            t = time.perf_counter()
            try:
                r = call(payload, metadata=meta, timeout=30)
                if r != payload:
                    errors.append("answer differs")
                    break
            except grpc.RpcError as e:
                errors.append("%s %s" % (e.code(), e.details()))
                break
            mine.append(time.perf_counter() - t)
        with lock:
            rtts.extend(mine)
        ch.close()

    ths = [threading.Thread(target=worker) for _ in range(a.conns)]
    for t in ths:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in ths:
        t.join()
    secs = time.perf_counter() - t0
    out = {"calls": len(rtts), "seconds": secs, "conns": a.conns, "errors": len(errors)}
    if rtts and secs > 0:
        out.update(rate=len(rtts) / secs, p50_ms=pct(rtts, 50) * 1e3, p99_ms=pct(rtts, 99) * 1e3)
    if errors:
        out["error"] = errors[0][:300]
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("args", nargs="*")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--msgs", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--token")
    ap.add_argument("--cafile")
    ap.add_argument("--root")
    a = ap.parse_args()
    if a.mode == "tcp-serve":
        tcp_serve(int(a.args[0]))
    elif a.mode == "tcp-client":
        tcp_client(int(a.args[0]), a.args[1], int(a.args[2]))
    elif a.mode == "ws-serve":
        ws_serve(int(a.args[0]))
    elif a.mode == "ws-client":
        a.url = a.args[0]
        ws_client(a)
    elif a.mode == "grpc-serve":
        grpc_serve(int(a.args[0]))
    elif a.mode == "grpc-client":
        a.target, a.method = a.args[0], a.args[1]
        grpc_client(a)
    else:
        sys.exit("unknown mode %r" % a.mode)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# Integration: a real gRPC server behind a site (h2c:// and h2://), a real gRPC client through the hub.
# SPDX-License-Identifier: MIT
"""Debian's python3-grpcio on both ends, without generated code (generic
handlers, raw bytes): the client speaks TLS to the hub with the hub's own
certificate as its root and the bearer token as metadata; its method paths
carry the hub's route prefix (/v1/sites/SITE/services/SVC), which the hub
strips. Asserts unary calls, server, client and bidirectional streaming of
1,000 messages each (the bidirectional one in lock step, so nothing can be
buffered whole), an error status with its message, a deadline that expires
(and the cancel reaching the service), request metadata reaching the
service and trailing metadata reaching the client, then one call to an
h2:// (TLS, ALPN h2) service. Last, with the hub's request_timeout and
request_body_timeout cut to 1 s and its stalled-stream caps to 1: a
bidirectional call that idles for longer than those and than the 5 s upload
stall rule goes on and completes, another call is served meanwhile, and a
server stream whose first message comes after request_timeout completes
(gRPC calls are long-lived streams: docs/protocol.md)."""
import hashlib
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Skip, closed_port, free_port, import_grpc  # noqa: E402

grpc = import_grpc(__file__)

SITE = "clinic-a"
N = 1000


class EchoService:
    """test.Echo: Unary, Fail, Slow, ServerStream, ClientStream, Bidi."""

    def __init__(self):
        self.seen_meta = {}
        self.cancelled = threading.Event()

    def unary(self, req, ctx):
        self.seen_meta = dict(ctx.invocation_metadata())
        ctx.set_trailing_metadata((("x-trailer-one", "first"), ("x-count-bin", b"\x00\x01\xff")))
        return b"echo:" + req

    def fail(self, req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such record: " + req.decode())

    def slow(self, req, ctx):
        ctx.add_callback(self.cancelled.set)
        for _ in range(100):
            if not ctx.is_active():
                break
            time.sleep(0.05)
        return b"too late"

    def server_stream(self, req, ctx):
        n = int(req.decode())
        for i in range(n):
            yield b"msg-%d" % i

    def client_stream(self, it, ctx):
        count, total = 0, 0
        for m in it:
            count += 1
            total += len(m)
        return b"%d %d" % (count, total)

    def bidi(self, it, ctx):
        for m in it:
            yield b"re:" + m

    def late_stream(self, req, ctx):
        """Its first message (and so its head) after float(req) seconds."""
        time.sleep(float(req.decode()))
        for i in range(3):
            yield b"late-%d" % i

    def big_down(self, req, ctx):
        n, size = (int(x) for x in req.decode().split())
        for i in range(n):
            yield bytes([i % 251]) * size

    def big_up(self, it, ctx):
        h, total = hashlib.sha256(), 0
        for m in it:
            h.update(m)
            total += len(m)
        return b"%d %s" % (total, h.hexdigest().encode())


def start_server(svc, creds=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(svc.unary),
        "Fail": grpc.unary_unary_rpc_method_handler(svc.fail),
        "Slow": grpc.unary_unary_rpc_method_handler(svc.slow),
        "ServerStream": grpc.unary_stream_rpc_method_handler(svc.server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(svc.client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(svc.bidi),
        "BigDown": grpc.unary_stream_rpc_method_handler(svc.big_down),
        "LateStream": grpc.unary_stream_rpc_method_handler(svc.late_stream),
        "BigUp": grpc.stream_unary_rpc_method_handler(svc.big_up),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo",
                                                                          handlers),))
    port = free_port()
    if creds is None:
        server.add_insecure_port("127.0.0.1:%d" % port)
    else:
        server.add_secure_port("127.0.0.1:%d" % port, creds)
    server.start()
    return server, port


def make_cert(h):
    """A self-signed certificate for 127.0.0.1 (CA:TRUE, so it is its own root)."""
    key, crt = h.path("svc.key"), h.path("svc.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-subj",
                    "/CN=grpc service", "-days", "30", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE"], check=True,
                   capture_output=True, timeout=60)
    with open(key, "rb") as f, open(crt, "rb") as g:
        return f.read(), g.read(), crt


def idle_calls(h, hub, new_channel, m, meta):
    """Idle gRPC streams outlive the hub's timeouts for requests. The
    channel (one connection) is made after the reload, so that every
    deadline of its connection runs on the new values."""
    hub.reload(request_timeout="1", request_body_timeout="1",
               max_stalled_streams_per_conn="1", max_stalled_streams_per_token="1")
    chan = new_channel()
    before = hub.proxy_refusals()
    idle = 6.0  # > the 5 s upload stall rule, 6 x request_body_timeout
    q = queue.Queue()

    def requests():
        while True:
            msg = q.get()
            if msg is None:
                return
            yield msg

    call = chan.stream_stream(m("Bidi"))(requests(), metadata=meta, timeout=60)
    q.put(b"first")
    first = next(call)
    t0 = time.monotonic()
    time.sleep(idle - 0.5)
    # The idle call is not a stalled upload: with a stalled cap of 1, a
    # stalled one would get this call refused (429).
    try:
        mid = chan.unary_unary(m("Unary"))(b"meanwhile", metadata=meta, timeout=20)
    except grpc.RpcError as e:
        mid = (e.code(), e.details())
    time.sleep(max(0.0, idle - (time.monotonic() - t0)))
    later, rest, err = [], None, None
    try:
        for i in range(10):
            q.put(b"after-%d" % i)
            later.append(next(call))
        q.put(None)
        rest = list(call)
    except grpc.RpcError as e:
        q.put(None)
        err = (e.code(), e.details())
    h.check(first == b"re:first" and later == [b"re:after-%d" % i for i in range(10)] and
            rest == [] and call.code() == grpc.StatusCode.OK,
            "a bidirectional call idle for %.0f s (request_body_timeout 1 s, upload stall "
            "rule 5 s) goes on and completes with OK" % idle,
            (first, later[:2], rest, err))
    h.check(mid == b"echo:meanwhile",
            "while a call idles, another call of the same token and connection is served "
            "(the idle call is not counted as stalled)", mid)
    try:
        got = list(chan.unary_stream(m("LateStream"))(b"2.5", metadata=meta, timeout=20))
    except grpc.RpcError as e:
        got = (e.code(), e.details())
    h.check(got == [b"late-0", b"late-1", b"late-2"],
            "a server stream whose first message comes 2.5 s after the call, past the hub's "
            "1 s request_timeout, completes (the call's deadline is the client's)", got)
    after = hub.proxy_refusals()
    h.check(all(after.get(k, 0) == before.get(k, 0) for k in ("stalled", "stall_reset")),
            "no call was refused or reset as stalled", (before, after))
    chan.close()


def main(h):
    if grpc is None:
        raise Skip("python3-grpcio is not installed")
    svc = EchoService()
    server, port = start_server(svc)
    key, crt, crt_path = make_cert(h)
    svc_tls = EchoService()
    server_tls, port_tls = start_server(svc_tls, grpc.ssl_server_credentials(((key, crt),)))
    try:
        hub, site, _ = h.setup(SITE, extra_services={
            "grpc": "h2c://127.0.0.1:%d" % port,
            "grpcs": "h2://127.0.0.1:%d" % port_tls,
            # the same TLS service without its CA: the system CAs refuse it
            "grpcbad": "h2://127.0.0.1:%d" % port_tls,
            "grpcdown": "h2c://127.0.0.1:%d" % closed_port(),
        }, site_args=["--service-opt", "grpcs:ca=" + crt_path])
        with open(os.path.join(hub.dir, "hub.crt"), "rb") as f:
            root = f.read()
        creds = grpc.ssl_channel_credentials(root_certificates=root)
        chan = grpc.secure_channel(hub.addr, creds,
                                   options=(("grpc.ssl_target_name_override", "127.0.0.1"),))
        meta = (("authorization", "Bearer " + hub.token), ("x-request-tag", "t-42"))

        def m(name, svc_name="grpc"):
            return "/v1/sites/%s/services/%s/test.Echo/%s" % (SITE, svc_name, name)

        # Unary, request metadata in, trailing metadata out.
        unary = chan.unary_unary(m("Unary"))
        t0 = time.monotonic()
        resp, call = unary.with_call(b"hello", metadata=meta, timeout=20)
        h.check(resp == b"echo:hello", "unary call answered through hub and site", resp)
        h.check(call.code() == grpc.StatusCode.OK, "unary status OK", call.code())
        h.check(svc.seen_meta.get("x-request-tag") == "t-42",
                "request metadata reached the service", svc.seen_meta)
        h.check("authorization" not in svc.seen_meta,
                "the user's bearer token did not reach the service", svc.seen_meta)
        tm = dict(call.trailing_metadata())
        h.check(tm.get("x-trailer-one") == "first", "custom trailer reached the client", tm)
        h.check(tm.get("x-count-bin") == b"\x00\x01\xff", "binary trailer reached the client", tm)
        for i in range(20):
            unary(b"n%d" % i, metadata=meta, timeout=20)
        h.info("21 unary calls in %.2f s" % (time.monotonic() - t0))

        # Server streaming.
        got = list(chan.unary_stream(m("ServerStream"))(b"%d" % N, metadata=meta, timeout=30))
        h.check(len(got) == N and got[0] == b"msg-0" and got[-1] == b"msg-%d" % (N - 1),
                "server streaming: %d messages in order" % N, len(got))

        # Client streaming.
        out = chan.stream_unary(m("ClientStream"))(iter([b"x" * (i % 50) for i in range(N)]),
                                                    metadata=meta, timeout=30)
        h.check(out == b"%d %d" % (N, sum(i % 50 for i in range(N))),
                "client streaming: %d messages counted by the service" % N, out)

        # Bidirectional, in lock step: message i+1 is only sent once the
        # answer to message i came back, which a proxy that buffers either
        # direction would deadlock (the deadline would say so).
        answers = []
        turn = threading.Semaphore(1)

        def requests():
            for i in range(N):
                if not turn.acquire(timeout=20):
                    return
                yield b"m%d" % i

        call = chan.stream_stream(m("Bidi"))(requests(), metadata=meta, timeout=60)
        for a in call:
            answers.append(a)
            turn.release()
        h.check(len(answers) == N and answers[-1] == b"re:m%d" % (N - 1),
                "bidirectional streaming in lock step: %d round trips" % N, len(answers))

        # Volume both ways, well past every window on the way (the tunnel's
        # 1 MiB and the site's 256 KiB per stream): 24 messages of 1 MiB.
        big, size = 24, 1 << 20
        t0 = time.monotonic()
        hd, total = hashlib.sha256(), 0
        for msg in chan.unary_stream(m("BigDown"))(b"%d %d" % (big, size), metadata=meta,
                                                    timeout=60):
            hd.update(msg)
            total += len(msg)
        want = hashlib.sha256(b"".join(bytes([i % 251]) * size for i in range(big))).hexdigest()
        h.check(total == big * size and hd.hexdigest() == want,
                "%d MiB down in 1 MiB messages, hash equal" % big, total)
        out = chan.stream_unary(m("BigUp"))((bytes([i % 251]) * size for i in range(big)),
                                            metadata=meta, timeout=60)
        h.check(out == b"%d %s" % (big * size, want.encode()),
                "%d MiB up in 1 MiB messages, hash equal" % big, out[:80])
        h.info("2 x %d MiB in %.2f s" % (big, time.monotonic() - t0))

        # A figure, not a check: sequential unary calls, direct and through
        # the hub, measured in the same run.
        direct = grpc.insecure_channel("127.0.0.1:%d" % port)
        rates = []
        for f in (direct.unary_unary("/test.Echo/Unary"), unary):
            f(b"w", metadata=meta, timeout=20)
            t0 = time.monotonic()
            for i in range(200):
                f(b"r", metadata=meta, timeout=20)
            rates.append(200 / (time.monotonic() - t0))
        direct.close()
        h.info("sequential unary calls/s: direct %.0f, through the hub %.0f" % tuple(rates))

        # Many calls at once share the site's one connection to the service.
        fut = [unary.future(b"c%d" % i, metadata=meta, timeout=30) for i in range(64)]
        res = [f.result() for f in fut]
        h.check(res == [b"echo:c%d" % i for i in range(64)], "64 concurrent unary calls", res[:3])

        # An error status with its message (a status without messages).
        try:
            chan.unary_unary(m("Fail"))(b"rec-7", metadata=meta, timeout=20)
            h.check(False, "Fail raised an error")
        except grpc.RpcError as e:
            h.check(e.code() == grpc.StatusCode.NOT_FOUND, "error status reached the client",
                    e.code())
            h.check(e.details() == "no such record: rec-7", "grpc-message reached the client",
                    e.details())

        # A deadline that expires; the cancel reaches the service.
        t0 = time.monotonic()
        try:
            chan.unary_unary(m("Slow"))(b"", metadata=meta, timeout=0.5)
            h.check(False, "Slow raised DEADLINE_EXCEEDED")
        except grpc.RpcError as e:
            h.check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, "deadline expired",
                    e.code())
        h.check(time.monotonic() - t0 < 4, "the deadline ended the call in time",
                time.monotonic() - t0)
        h.check(svc.cancelled.wait(10), "the service saw the call cancelled")

        # No token: the hub refuses before the site (UNAUTHENTICATED).
        try:
            unary(b"x", timeout=10)
            h.check(False, "a call without a token is refused")
        except grpc.RpcError as e:
            h.check(e.code() == grpc.StatusCode.UNAUTHENTICATED,
                    "a call without a token is refused (401 -> UNAUTHENTICATED)", e.code())

        # h2:// service (TLS with ALPN h2, checked against its own CA).
        resp, call = chan.unary_unary(m("Unary", "grpcs")).with_call(b"tls", metadata=meta,
                                                                      timeout=20)
        h.check(resp == b"echo:tls", "unary call to an h2:// service", resp)
        tm = dict(call.trailing_metadata())
        h.check(tm.get("x-trailer-one") == "first", "trailers from an h2:// service", tm)
        got = list(chan.unary_stream(m("ServerStream", "grpcs"))(b"%d" % N, metadata=meta,
                                                                 timeout=30))
        h.check(len(got) == N, "server streaming from an h2:// service", len(got))

        # Failures to reach a service are clear: 502 (gRPC UNAVAILABLE) with
        # the reason in the site's log.
        for name, why in (("grpcbad", "TLS: certificate signed by an unknown CA"),
                          ("grpcdown", "could not reach the service")):
            mark = site.proc.mark()
            try:
                chan.unary_unary(m("Unary", name))(b"x", metadata=meta, timeout=20)
                h.check(False, "%s: the call fails" % name)
            except grpc.RpcError as e:
                h.check(e.code() == grpc.StatusCode.UNAVAILABLE,
                        "%s: UNAVAILABLE (the hub's 502)" % name, (e.code(), e.details()))
            h.check(site.proc.wait_log(r"upstream_error service=%s .*%s" % (name, why), 10,
                                       since=mark, fatal=False),
                    "%s: the site logs why: %s" % (name, why))

        chan.close()
        idle_calls(h, hub, lambda: grpc.secure_channel(
            hub.addr, creds, options=(("grpc.ssl_target_name_override", "127.0.0.1"),)), m, meta)
    finally:
        server.stop(0)
        server_tls.stop(0)


if __name__ == "__main__":
    Harness.main("grpc", main, tools=("openssl",))

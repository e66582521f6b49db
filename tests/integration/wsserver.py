# WebSocket helpers for the integration tests: a python3-websockets echo server, and a WebSocket on an HTTP/2 extended CONNECT stream.
# SPDX-License-Identifier: MIT
import asyncio
import hashlib
import threading

from harness import Fatal, debian_import

websockets = None
if debian_import("websockets"):
    import websockets
if debian_import("wsproto.connection", "wsproto.events"):
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import BytesMessage, TextMessage


class WsServer:
    """python3-websockets on 127.0.0.1 in its own thread: echoes; the path
    /close closes at once with 4002; records (path, close code) of each.
    Needs websockets (None above when Debian's python3-websockets is missing)."""

    def __init__(self):
        self.closes = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        if not ready.wait(10):
            raise Fatal("websockets server did not start")

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(websockets.serve(
            self._handler, "127.0.0.1", 0, max_size=None, ping_interval=None,
            subprotocols=["chat"], compression=None))
        self.port = srv.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handler(self, ws, path=None):
        path = path if path is not None else getattr(ws, "path", "")
        if path.endswith("/close"):
            await ws.close(4002, "server says bye")
        else:
            try:
                async for msg in ws:
                    await ws.send(msg)
            except websockets.ConnectionClosed:
                pass
        await ws.wait_closed()
        self.closes.append((path, ws.close_code))

    @property
    def url(self):
        return "http://127.0.0.1:%d/ws" % self.port


class WsStream:
    """One WebSocket on an HTTP/2 CONNECT stream; wsproto makes the frames."""

    def __init__(self, client, path="/echo", keep=True, protocols=("chat",)):
        self.c = client
        extra = [("sec-websocket-version", "13")]
        if protocols:
            extra.append(("sec-websocket-protocol", ", ".join(protocols)))
        self.st = client.open("ws", protocol="websocket", path=path, extra=extra, keep=True)
        self.ws = Connection(ConnectionType.CLIENT)
        self.events = []
        self.keep = keep
        self.hash = hashlib.sha256()
        self.got_bytes = 0
        self.part = bytearray()

    def send(self, ev):
        self.st.send(self.ws.send(ev))

    def poll(self):
        if self.st.data:
            self.ws.receive_data(bytes(self.st.data))
            self.st.data.clear()
            for ev in self.ws.events():
                if isinstance(ev, BytesMessage) and not self.keep:
                    self.hash.update(ev.data)
                    self.got_bytes += len(ev.data)
                    continue
                if isinstance(ev, (TextMessage, BytesMessage)):
                    self.part += ev.data if isinstance(ev, BytesMessage) else ev.data.encode()
                    if not ev.message_finished:
                        continue
                    ev = type(ev)(data=bytes(self.part) if isinstance(ev, BytesMessage)
                                  else self.part.decode())
                    self.part = bytearray()
                self.events.append(ev)
        return self.events

    def wait(self, kind, timeout=20):
        def cond():
            self.poll()
            return any(isinstance(e, kind) for e in self.events) or self.st.done
        self.c.pump(cond, timeout, kind.__name__)
        for i, e in enumerate(self.events):
            if isinstance(e, kind):
                return self.events.pop(i)
        return None

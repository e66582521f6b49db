# A python3-websockets echo server for the integration tests (test_websocket, test_cluster_proxy).
# SPDX-License-Identifier: MIT
import asyncio
import threading

from harness import Fatal, debian_import

websockets = None
if debian_import("websockets"):
    import websockets


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

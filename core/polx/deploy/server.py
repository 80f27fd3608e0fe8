"""``polx serve DIR --port P``: an exported policy behind a websocket, one session per client.

Each connection gets its own runtime (``policy.session()``: own observation history, action
queue and noise generator) over the one loaded network, and is sent the policy's metadata as its
first message. Requests and replies are msgpack maps with numpy arrays (``polx.deploy.wire``);
every reply carries ``server_timing``. A request that cannot be decoded or does not fit the policy
(a missing key, a wrong shape) is answered with ``{"type": "error", "error": ...}`` and the
connection stays open; nothing a client sends stops the server. A plain HTTP GET (any path, or
``/healthz``) answers ``200`` with a JSON status, for load balancers and ``curl``.

Requests are served one at a time on the event loop: a chunk is one network call, and on a CPU
two at once would only share its cores.
"""

from __future__ import annotations

import asyncio
import errno
import http
import json
import signal
import sys
import threading
import time
from typing import Any, Callable

from polx.deploy import wire
from polx.deploy.artifact import ObservationError
from polx.errors import PolxError, UserInputError

MAX_MESSAGE_BYTES = 256 * 2**20
HEALTH_PATHS = ("/healthz", "/health")


def check_port(host: str, port: int) -> None:
    """``PolxError`` naming ``port`` when it cannot be bound (in use, or not allowed): checked before the
    policy is loaded, so a busy port is reported at once."""
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise _bind_error(exc, host, port) from None


def _bind_error(exc: OSError, host: str, port: int) -> PolxError:
    if exc.errno == errno.EADDRINUSE:
        return PolxError(f"port {port} on {host} is in use (another server?); choose another with --port")
    return PolxError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


class PolicyServer:
    """Serves ``policy`` (a loaded policy: ``load_policy(...)``) on ``host:port``; ``port=0`` picks a free one."""

    def __init__(self, policy: Any, host: str = "0.0.0.0", port: int = 8000, *, log: Callable[[str], None] | None = None):
        self.policy, self.host, self.port = policy, host, port
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.clients = 0
        self.served = 0
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ HTTP health check

    def _health(self, connection: Any, request: Any) -> Any:
        upgrade = request.headers.get("Upgrade", "")
        if request.path.split("?")[0] in HEALTH_PATHS or upgrade.lower() != "websocket":
            body = {"status": "ok", "runtime": getattr(self.policy, "runtime", None), "clients": self.clients, "served": self.served}
            response = connection.respond(http.HTTPStatus.OK, json.dumps(body) + "\n")
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    # ------------------------------------------------------------------ websocket sessions

    async def _handle(self, connection: Any) -> None:
        session = self.policy.session()
        self.clients += 1
        try:
            await connection.send(wire.packb({"type": "metadata", "metadata": self.policy.metadata, "runtime": session.runtime}))
            async for message in connection:
                await connection.send(self.reply(session, message))
        except Exception as exc:  # a connection that breaks mid-send: that client is gone, the server is not
            if not type(exc).__module__.startswith("websockets"):
                self.log(f"polx serve: a session ended on {type(exc).__name__}: {exc}")
        finally:
            self.clients -= 1

    def reply(self, session: Any, message: Any) -> bytes:
        """The encoded reply to one request; never raises for anything the client sent."""
        start = time.perf_counter()
        infer_ms = 0.0
        try:
            request = wire.unpackb(message)
            if not isinstance(request, dict):
                raise wire.WireError(f"a request is a map with a 'type'; got a {type(request).__name__}")
            kind = request.get("type")
            t0 = time.perf_counter()
            if kind == "act":
                out = {"type": "action", "action": session.act(request.get("obs"))}
            elif kind == "predict_chunk":
                noise = request.get("noise")
                out = {"type": "chunk", "actions": session.predict_chunk(request.get("obs_history"), noise=noise)}
            elif kind == "reset":
                seed = request.get("seed")
                if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
                    raise wire.WireError(f"reset: seed must be null or an int in 0..2**63-1; got {seed!r}")
                session.reset(seed=seed)
                out = {"type": "reset"}
            elif kind == "metadata":
                out = {"type": "metadata", "metadata": self.policy.metadata, "runtime": session.runtime}
            else:
                raise wire.WireError(f"unknown request type {kind!r}; send one of: act, predict_chunk, reset, metadata")
            infer_ms = (time.perf_counter() - t0) * 1e3
            self.served += 1
        except (wire.WireError, ObservationError, UserInputError) as exc:
            out = {"type": "error", "error": str(exc)}
        except Exception as exc:  # the policy itself failed on this input: say so, keep serving
            out = {"type": "error", "error": f"the policy failed on this request: {type(exc).__name__}: {exc}"}
        out["server_timing"] = {"infer_ms": infer_ms, "total_ms": (time.perf_counter() - start) * 1e3}
        return wire.packb(out)

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> Any:
        from websockets.asyncio.server import serve

        try:
            return await serve(
                self._handle, self.host, self.port, process_request=self._health, compression=None, max_size=MAX_MESSAGE_BYTES,
                ping_interval=None,
            )  # fmt: skip
        except OSError as exc:
            raise _bind_error(exc, self.host, self.port) from None

    async def _main(self, on_ready: Callable[[int], None] | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._server = await self._open()
        self.port = self._server.sockets[0].getsockname()[1]
        if on_ready is not None:
            on_ready(self.port)
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            self._server.close()
            await self._server.wait_closed()

    def run(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve in this thread until SIGINT or SIGTERM (or ``stop()``)."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, lambda: self._stop.set() if self._stop else None)
                except (NotImplementedError, RuntimeError):  # not the main thread
                    pass
            await self._main(on_ready)

        asyncio.run(main())

    def start(self) -> "PolicyServer":
        """Serve in a background thread; returns once listening (``port`` then holds the real port)."""

        def target() -> None:
            try:
                asyncio.run(self._main(None))
            except BaseException as exc:
                self._error = exc
                self._started.set()

        self._thread = threading.Thread(target=target, name="polx-serve", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"ws://{host}:{self.port}"

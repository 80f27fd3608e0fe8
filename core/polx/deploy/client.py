"""``polx.PolicyClient(url)``: a policy served by ``polx serve``, with a loaded policy's interface.

``reset(seed=None)``, ``act(obs) -> action`` and ``predict_chunk(obs_history, noise=None)`` are
requests to the server, whose session for this connection keeps the observation history and the
action queue; ``metadata`` is what the server sent on connect; ``server_timing`` the last reply's
timing. Imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from polx.deploy import wire
from polx.errors import PolxError, UserInputError


def _direct_connect_kwargs() -> dict:
    """websockets >= 17 warns when ``connect()`` returns a connection outside ``with`` unless told ``legacy=True``."""
    import inspect

    from websockets.sync.client import connect

    return {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}


class PolicyServerError(PolxError):
    """The server answered a request with an error (the connection stays usable)."""


class PolicyClient:
    """A connection to ``ws://HOST:PORT``; use as a context manager or call ``close()``."""

    runtime = "websocket"

    def __init__(self, url: str, *, open_timeout: float = 10.0):
        from websockets.sync.client import connect

        _DIRECT = _direct_connect_kwargs()
        if not url.startswith(("ws://", "wss://")):
            raise UserInputError(f"policy server address {url!r} must start with ws:// or wss:// (e.g. ws://localhost:8000)")
        self.url = url
        try:
            self._ws = connect(url, compression=None, max_size=None, open_timeout=open_timeout, proxy=None, ping_interval=None, **_DIRECT)
        except (OSError, TimeoutError) as exc:
            raise PolxError(f"cannot connect to the policy server at {url}: {getattr(exc, 'strerror', None) or exc}") from None
        except Exception as exc:  # the handshake failed: not a websocket server
            raise PolxError(f"cannot connect to the policy server at {url}: {type(exc).__name__}: {exc}") from None
        hello = self._receive()
        if hello.get("type") != "metadata" or not isinstance(hello.get("metadata"), dict):
            self.close()
            raise PolxError(f"{url} did not send a polx policy's metadata on connect; is it a polx serve server?")
        self.metadata: dict = hello["metadata"]
        self.server_runtime = hello.get("runtime")
        self.server_timing: dict = {}
        self.n_obs_steps = int(self.metadata["n_obs_steps"])

    def _receive(self) -> dict:
        try:
            message = wire.unpackb(self._ws.recv())
        except wire.WireError as exc:
            raise PolxError(f"the policy server at {self.url} sent an unreadable reply: {exc}") from None
        except Exception as exc:  # the connection closed
            raise PolxError(f"the connection to the policy server at {self.url} was lost: {type(exc).__name__}: {exc}") from None
        if not isinstance(message, dict):
            raise PolxError(f"the policy server at {self.url} sent a {type(message).__name__}, not a map")
        return message

    def request(self, request: Mapping[str, Any]) -> dict:
        """Send one request; its reply (``PolicyServerError`` when the server answers with an error)."""
        try:
            self._ws.send(wire.packb(dict(request)))
        except Exception as exc:
            raise PolxError(f"the connection to the policy server at {self.url} was lost: {type(exc).__name__}: {exc}") from None
        reply = self._receive()
        self.server_timing = reply.get("server_timing") or {}
        if reply.get("type") == "error":
            raise PolicyServerError(f"policy server {self.url}: {reply.get('error')}")
        return reply

    def reset(self, seed: int | None = None) -> None:
        self.request({"type": "reset", "seed": None if seed is None else int(seed)})

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        reply = self.request({"type": "act", "obs": {k: np.asarray(v) for k, v in obs.items()}})
        return np.array(reply["action"])  # a writable copy

    def predict_chunk(self, obs_history: Any, noise: np.ndarray | None = None) -> np.ndarray:
        if isinstance(obs_history, (list, tuple)):
            obs_history = {k: np.stack([np.asarray(o[k]) for o in obs_history]) for k in obs_history[0]} if obs_history else {}
        history = {k: np.asarray(v) for k, v in obs_history.items()}
        reply = self.request({"type": "predict_chunk", "obs_history": history, "noise": None if noise is None else np.asarray(noise, dtype=np.float32)})
        return np.array(reply["actions"])

    def close(self) -> None:
        try:
            self._ws.close()
        except Exception:
            pass

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

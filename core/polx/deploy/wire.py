"""The policy server's messages: msgpack maps whose numpy arrays travel as raw bytes (no pickle).

An array is packed as ``{"__ndarray__": True, "data": bytes, "dtype": str, "shape": [...]}`` and a
numpy scalar as ``{"__npgeneric__": True, "data": bytes, "dtype": str}``: the layout of openpi's
``msgpack_numpy``, so its clients' encoders work here. Only boolean and numeric dtypes are accepted
on the way in; anything else, or bytes that do not fill the shape, is a ``WireError``.

Requests (client -> server): ``{"type": "act", "obs": {...}}``, ``{"type": "reset", "seed": int|None}``,
``{"type": "predict_chunk", "obs_history": {key: (To, ...)}, "noise": array|None}``, ``{"type": "metadata"}``.
Replies: ``{"type": "metadata", "metadata": {...}}`` (also sent first, on connect),
``{"type": "action", "action": (A,)}``, ``{"type": "chunk", "actions": (n_action_steps, A)}``,
``{"type": "reset"}``, or ``{"type": "error", "error": "what was wrong"}``; every reply to a request
carries ``server_timing`` (``infer_ms``: the policy's time; ``total_ms``: decode to reply).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

_KINDS = "biufc"  # bool, signed and unsigned ints, floats, complex


class WireError(ValueError):
    """A message that is not a well-formed polx policy-server message."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _KINDS:
            raise WireError(f"arrays of dtype {obj.dtype} cannot be sent; use a numeric dtype")
        return {"__ndarray__": True, "data": np.ascontiguousarray(obj).tobytes(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {"__npgeneric__": True, "data": obj.tobytes(), "dtype": obj.dtype.str}
    return obj


def _dtype(text: Any) -> np.dtype:
    try:
        dtype = np.dtype(text if isinstance(text, str) else bytes(text).decode())
    except (TypeError, ValueError, UnicodeDecodeError):
        raise WireError(f"unknown array dtype {text!r}") from None
    if dtype.kind not in _KINDS:
        raise WireError(f"array dtype {dtype} is not accepted; send bool or numeric arrays")
    return dtype


def _decode(obj: dict) -> Any:
    if obj.get("__ndarray__") is True:
        dtype = _dtype(obj.get("dtype"))
        shape, data = obj.get("shape"), obj.get("data")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(n, int) and n >= 0 for n in shape) or not isinstance(data, bytes):
            raise WireError("an __ndarray__ needs bytes 'data' and a 'shape' of non-negative ints")
        need = dtype.itemsize * math.prod(shape)
        if len(data) != need:
            raise WireError(f"array data holds {len(data)} bytes; shape {list(shape)} of {dtype} needs {need}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if obj.get("__npgeneric__") is True:
        dtype, data = _dtype(obj.get("dtype")), obj.get("data")
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise WireError("an __npgeneric__ needs 'data' of its dtype's size")
        return np.frombuffer(data, dtype=dtype)[0]
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: Any) -> Any:
    """Decode one message; ``WireError`` for anything that is not msgpack of the layout above."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("messages are binary msgpack frames, not text")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as exc:  # msgpack's own errors: truncated, extra data, bad types
        raise WireError(f"not a msgpack message ({type(exc).__name__}: {str(exc)[:120]})") from None

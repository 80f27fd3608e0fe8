"""A trained policy outside polx's trainer: export, load (torch or onnxruntime), serve, connect.

``polx export`` (``export.py``, ``onnx_export.py``) writes a self-contained directory
(``artifact.py`` describes it); ``load_policy`` (``load.py``) runs it with torch
(``torch_policy.py``) or onnxruntime (``onnx_policy.py``); ``polx serve`` (``server.py``) puts it
behind a websocket and ``PolicyClient`` (``client.py``) drives it from another process, both
speaking msgpack with numpy arrays (``wire.py``). Importing this package imports no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_policy", "PolicyClient"]


def __getattr__(name: str) -> Any:
    if name == "load_policy":
        from polx.deploy.load import load_policy

        return load_policy
    if name == "PolicyClient":
        from polx.deploy.client import PolicyClient

        return PolicyClient
    raise AttributeError(f"module 'polx.deploy' has no attribute {name!r}")

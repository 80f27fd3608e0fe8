"""Per-key, per-dimension affine normalization whose statistics live in the policy's state_dict.

Each key maps ``x`` to ``(x - shift) * scale + bias`` along its last dimension:

- ``limits``: ``shift = min``, ``scale = 2 / (max - min)``, ``bias = -1``, so the fit data lands in
  [-1, 1]. Shifting by the data minimum (a value of the data itself, exact in float32) rather
  than by a rounded midpoint keeps the output inside [-1, 1] even for narrow ranges.
- ``gaussian``: ``shift = mean``, ``scale = 1 / std``, ``bias = 0``.
- identity keys (images, already in [0, 1]): pass through unchanged.

A dimension that is (nearly) constant would divide by ~0; it gets ``scale = 1, bias = 0`` so it
maps to 0 and still round-trips.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

MODES = ("limits", "gaussian")
_CONSTANT_EPS = 1e-4  # a dimension whose range (limits) or std (gaussian) is below this is "constant"


class _KeyStats(nn.Module):
    """The three buffers of one key (shape ``(D,)``, or ``()`` for identity keys)."""

    def __init__(self, shift: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)


class Normalizer(nn.Module):
    """Normalize / unnormalize named arrays; a submodule of the policy, so it saves with it."""

    def __init__(self, stats: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
        """``stats``: key -> (shift, scale, bias). Usually built by ``fit`` or ``from_state_dict``."""
        super().__init__()
        for key in stats:
            if not key or "." in key:
                raise ValueError(f"normalizer key {key!r} must be non-empty and contain no '.'")
        self.stats = nn.ModuleDict({key: _KeyStats(*tensors) for key, tensors in stats.items()})

    @classmethod
    def fit(
        cls, data: Mapping[str, np.ndarray], mode: str = "limits", identity_keys: Iterable[str] = ()
    ) -> "Normalizer":
        """Statistics of each ``(N, ..., D)`` array in ``data`` over all but its last axis.

        ``identity_keys`` pass through (their arrays, if present in ``data``, are not read).
        """
        if mode not in MODES:
            raise ValueError(f"normalizer mode must be one of {', '.join(MODES)}; got {mode!r}")
        identity_keys = set(identity_keys)
        stats = {key: (torch.zeros(()), torch.ones(()), torch.zeros(())) for key in sorted(identity_keys)}
        for key, arr in data.items():
            if key in identity_keys:
                continue
            arr = np.asarray(arr)
            if arr.ndim < 2 or arr.shape[0] == 0:
                raise ValueError(f"normalizer: {key} has shape {arr.shape}; expected (N, ..., D) with N > 0")
            x = arr.reshape(-1, arr.shape[-1]).astype(np.float64)  # (M, D)
            if mode == "limits":
                lo, hi = x.min(0), x.max(0)
                constant = hi - lo < _CONSTANT_EPS
                shift = lo
                scale = np.where(constant, 1.0, 2.0 / np.where(constant, 1.0, hi - lo))
                bias = np.where(constant, 0.0, -1.0)
            else:
                mean, std = x.mean(0), x.std(0)
                constant = std < _CONSTANT_EPS
                shift, scale, bias = mean, 1.0 / np.where(constant, 1.0, std), np.zeros_like(mean)
            stats[key] = tuple(torch.as_tensor(v, dtype=torch.float32) for v in (shift, scale, bias))
        return cls(stats)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> "Normalizer":
        """Rebuild from ``normalizer.state_dict()``, or from a parent's state_dict with ``prefix``
        (e.g. ``"normalizer."``): the buffers hold everything, so no data is needed."""
        stats: dict[str, dict[str, torch.Tensor]] = {}
        head = prefix + "stats."
        for name, value in state_dict.items():
            if name.startswith(head):
                key, buffer = name[len(head) :].rsplit(".", 1)
                stats.setdefault(key, {})[buffer] = value
        if not stats:
            raise ValueError(f"no normalizer buffers (names starting with {head!r}) in the state_dict")
        return cls({key: (b["shift"], b["scale"], b["bias"]) for key, b in stats.items()})

    def keys(self) -> list[str]:
        return list(self.stats.keys())

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        s = self._stats(key)
        return (x - s.shift.to(x.dtype)) * s.scale.to(x.dtype) + s.bias.to(x.dtype)

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        s = self._stats(key)
        return (x - s.bias.to(x.dtype)) / s.scale.to(x.dtype) + s.shift.to(x.dtype)

    def _stats(self, key: str) -> _KeyStats:
        if key not in self.stats:
            raise KeyError(f"normalizer has no key {key!r}; it has: {', '.join(self.keys())}")
        return self.stats[key]

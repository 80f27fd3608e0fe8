"""Demonstration data: zarr replay buffer, sequence windows, normalizer, training dataset.

Names are imported lazily so that ``polx data info`` (which needs only the replay buffer) does
not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ReplayBuffer": "polx.data.replay_buffer",
    "describe": "polx.data.replay_buffer",
    "SequenceSampler": "polx.data.sampler",
    "episode_split": "polx.data.sampler",
    "Normalizer": "polx.data.normalizer",
    "PolicyDataset": "polx.data.dataset",
    "load_policy_arrays": "polx.data.dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'polx.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

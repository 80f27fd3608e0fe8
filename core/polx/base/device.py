"""``train.device`` to a torch device (training, evaluation, DAgger and export agree on it)."""

from __future__ import annotations

import torch

from polx.errors import UserInputError


def resolve_device(setting: str, local_rank: int = 0) -> torch.device:
    """``train.device`` -> a device; ``auto`` picks CUDA when available; several processes get one GPU each."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(f"train.device={setting} but CUDA is not available here; use train.device=auto or cpu")
    if setting == "cuda":
        setting = f"cuda:{local_rank}"
    return torch.device(setting)

"""Exponential moving average of the weights, with diffusion_policy's warmup formula.

``decay = 1 - (1 + k) ** -power`` with ``k = optimization_step - 1``, 0 for the first two
updates (the average starts as a copy) and capped at ``max_value``: early on the average follows
the weights closely, later it averages over ever longer windows.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_decay(optimization_step: int, power: float = 0.75, max_value: float = 0.9999) -> float:
    """Decay used for the update after ``optimization_step`` earlier updates."""
    k = max(0, optimization_step - 1)
    if k == 0:
        return 0.0
    return max(0.0, min(1.0 - (1.0 + k) ** -power, max_value))


class EMA:
    """Keeps ``model`` (a separately built copy of the trained network) as the running average."""

    def __init__(self, model: nn.Module, power: float = 0.75, max_value: float = 0.9999):
        self.model = model.eval().requires_grad_(False)
        self.power = power
        self.max_value = max_value
        self.optimization_step = 0

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        decay = ema_decay(self.optimization_step, self.power, self.max_value)
        for (name, avg), (src_name, param) in zip(self.model.named_parameters(), source.named_parameters(), strict=True):
            assert name == src_name, f"EMA copy differs from the model at {name} / {src_name}"
            if param.requires_grad:
                avg.mul_(decay).add_(param.detach(), alpha=1.0 - decay)
            else:  # frozen weights are not averaged, only followed
                avg.copy_(param)
        for avg, buf in zip(self.model.buffers(), source.buffers(), strict=True):
            avg.copy_(buf)  # statistics (e.g. the normalizer) are copied, as diffusion_policy does
        self.optimization_step += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimization_step": self.optimization_step}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimization_step = int(state["optimization_step"])

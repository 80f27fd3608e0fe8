"""Learning rate: linear warmup, then cosine decay from ``lr`` to ``min_lr`` at ``max_steps``.

A plain function of the step rather than a stateful scheduler object: resuming only needs the
global step, and a resumed run with a larger ``train.max_steps`` re-stretches the cosine over the
new length from where it is (what diffusion_policy does when it rebuilds its scheduler).
``train.schedule_start`` moves the schedule's step 0 (the trainer passes ``step - schedule_start``
and ``max_steps - schedule_start``): a stage that continues another run's checkpoint, such as a
``polx dagger`` round, gets its own warmup and decay.
"""

from __future__ import annotations

import math

import torch


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

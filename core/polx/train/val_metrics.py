"""Validation figures a study compares across steps and runs, beyond ``val_loss``.

``val_loss`` itself is the teacher-forced masked loss with fixed noise and times: the trainer
re-seeds a forked RNG with ``train.seed`` before every validation, and the windows are the same
seeded subset each time, so two validations (or two runs with the same seed and data) differ only
in their weights. Here:

* ``val_group_loss_<group>``: the objective's per-group loss terms (``group_loss_<group>``, the plain
  masked mse over that group's dims) averaged over the validation batches, and
  ``val_group_loss_imbalance`` = (max - min) / sum over the groups, ``|L - R| / (L + R)`` for two arms;
* ``val_action_mae_<n>step``: the mean absolute error of sampled chunks against the data, in the
  env's units, over valid entries (steps not padding, dims not masked), on the first validation
  batch, with ``n`` sampling steps for each ``n`` in ``eval.sample_steps`` (flow steps for
  ``imf``, DDIM steps for ``ddpm``); the noise is seeded, so it is the same at every validation.
  With several action groups also ``val_action_mae_<group>_<n>step`` and
  ``val_action_mae_imbalance_<n>step``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import torch

from polx.policy.valid import masked_mean, valid_mask

GROUP_LOSS = "group_loss_"


def imbalance(values: Iterable[float]) -> float:
    """(max - min) / sum: ``|L - R| / (L + R)`` for two groups; 0 when every group is equal (or all zero)."""
    values = list(values)
    total = sum(values)
    return (max(values) - min(values)) / total if total > 0 else 0.0


def group_loss_metrics(metrics: list[Mapping[str, Any]]) -> dict[str, float]:
    """The objective's ``group_loss_<g>`` metrics of each validation batch -> their means and imbalance."""
    names = [k for k in (metrics[0] if metrics else {}) if k.startswith(GROUP_LOSS)]
    if not names:
        return {}
    out = {f"val_{name}": float(np.mean([float(m[name]) for m in metrics])) for name in names}
    out["val_group_loss_imbalance"] = imbalance(out[f"val_{name}"] for name in names)
    return out


@torch.no_grad()
def sample_mae(policy: Any, batch: dict, sample_steps: Iterable[int], seed: int, groups: tuple) -> dict[str, float]:
    """``val_action_mae_<n>step`` (and per group) of ``policy``'s sampled chunks on ``batch``.

    ``groups`` are the env's ``(name, start, stop)`` action groups (``ActionLayout.groups``): MAE is
    measured at the env's width, so a packed layout's padding never counts.
    """
    out: dict[str, float] = {}
    device = policy.device
    action = batch["action"].to(device)  # (B, T, A), env units
    mask = batch.get("action_mask")
    valid = valid_mask(action, batch["action_is_pad"].to(device), mask.to(device) if mask is not None else None)
    was_training = policy.training
    policy.eval()
    try:
        for steps in sample_steps:
            generator = torch.Generator(device=device).manual_seed(seed)
            err = (policy.predict_action(batch["obs"], num_steps=steps, generator=generator)["action_pred"] - action).abs()
            out[f"val_action_mae_{steps}step"] = float(masked_mean(err, valid))
            if len(groups) > 1:
                per_group = {name: float(masked_mean(err[..., a:b], valid[..., a:b])) for name, a, b in groups}
                out.update({f"val_action_mae_{name}_{steps}step": v for name, v in per_group.items()})
                out[f"val_action_mae_imbalance_{steps}step"] = imbalance(per_group.values())
    finally:
        policy.train(was_training)
    return out


@torch.no_grad()
def cross_group_attention(policy: Any, batch: dict, seed: int) -> dict[str, float]:
    """``val_cross_group_attention``: the share of attention crossing between action groups, for heads
    that measure it (``imf_attnres`` in ``split_communicating``), at the first sampling call (pure
    noise, seeded); the mean over layers and groups of the mass a group's tokens put on the others'."""
    head = policy.head
    if not callable(getattr(head, "cross_group_attention", None)) or getattr(head, "mode", None) != "split_communicating":
        return {}
    was_training = policy.training
    policy.eval()
    try:
        cond = policy.encode(batch["obs"])
        B, spec = cond.shape[0], head.spec
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(B, spec.horizon, spec.action_dim, generator=generator).to(cond.device)
        ones, zeros = torch.ones(B, device=cond.device), torch.zeros(B, device=cond.device)
        attention = policy.objective_head.cross_group_attention(z, zeros, ones, cond)  # (n_layer, G, G)
    finally:
        policy.train(was_training)
    G = attention.shape[-1]
    crossing = attention.sum(dim=(-2, -1)) - attention.diagonal(dim1=-2, dim2=-1).sum(-1)  # (n_layer,)
    return {"val_cross_group_attention": float(crossing.mean() / G)}

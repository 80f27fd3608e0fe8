"""The one definition of which action entries count in a loss: the ``valid`` mask.

``Policy.compute_loss`` computes it once per batch and hands it to the objective as
``batch["valid"]`` (B, T, A) bool: an entry is valid when its step is not padding
(``action_is_pad``) and the optional ``action_mask`` (broadcastable to (B, T, A), nonzero =
valid) keeps it. Objectives read it with ``batch_valid(batch)``, which also serves callers that
build batches by hand (tests, benchmarks) and pass only ``action_is_pad``/``action_mask``.
"""

from __future__ import annotations

import torch


def valid_mask(action: torch.Tensor, action_is_pad: torch.Tensor | None = None, action_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bool (B, T, A): not padding and not masked out; a mask that does not broadcast is named."""
    valid = torch.ones(action.shape, dtype=torch.bool, device=action.device)
    if action_is_pad is not None:
        valid = valid & ~action_is_pad.bool()[..., None]
    if action_mask is not None:
        try:
            valid = valid & torch.broadcast_to(action_mask.bool(), action.shape)
        except RuntimeError:
            raise ValueError(
                f"action_mask: shape {tuple(action_mask.shape)} does not broadcast to the action's {tuple(action.shape)}"
            ) from None
    return valid


def batch_valid(batch: dict) -> torch.Tensor:
    """``batch["valid"]`` when the policy computed it, else the same mask from the batch's parts."""
    if batch.get("valid") is not None:
        return batch["valid"]
    return valid_mask(batch["action"], batch.get("action_is_pad"), batch.get("action_mask"))


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over valid entries (0 when none); ``where``, not a product, so masked NaN/inf never leak."""
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp_min(1)


def group_means(values: torch.Tensor, valid: torch.Tensor, groups) -> dict[str, torch.Tensor]:
    """``masked_mean`` of ``values`` (B, T, A) over each action group's dims, ``{"group_loss_<name>": mean}``.

    ``groups``: ``(name, start, stop)`` triples, as ``spec.groups()`` gives. Empty for one group:
    the plain loss already says it. Objectives add these to their metrics, so the trainer can log
    per-group losses and their imbalance without knowing the objective.
    """
    if len(groups) < 2:
        return {}
    return {f"group_loss_{name}": masked_mean(values[..., start:stop], valid[..., start:stop]) for name, start, stop in groups}

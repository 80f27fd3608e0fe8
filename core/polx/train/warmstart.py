"""Warm starts: a new run's weights from another run's checkpoint (``train.init_from``).

Only weights move: the model's state dict (the EMA weights when the checkpoint kept them, since
those are what its evaluation used; the normalizer with them, because the head was trained in
its units), never the optimizer, the step or the schedule. A head may translate another head's
weights into its own layout by offering ``adapt_state_dict(source) -> state``: ``imf_attnres``
maps a ``shared`` head into each group's branch of a split head. Whatever does not fit, a
parameter whose shape differs, one the checkpoint lacks or one this model lacks, is refused with
every such parameter named (exit 2), before the run directory exists.

``compare_warm_start`` is what ``polx check warmstart`` reports: on a real batch, the largest
difference between the two heads' action embeddings and between their masked losses at step 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polx.errors import UserInputError
from polx.base.checkpoint import check_complete, load_checkpoint, model_state_from

HEAD = "head."
#: losses closer than this (relative) count as equivalent: float32 sums in another order
TOLERANCE = 1e-5


def checkpoint_weights(path: Path) -> tuple[dict, dict]:
    """``(state, weights)`` of the checkpoint at ``path``: the EMA weights when kept, else the trained ones."""
    state = load_checkpoint(path)
    check_complete(state, path)
    return state, model_state_from(state, ema=True)


def mapped_weights(model: Any, weights: dict) -> dict:
    """``weights`` in ``model``'s keys: the head's part through its ``adapt_state_dict`` when it has one."""
    head = {k[len(HEAD) :]: v for k, v in weights.items() if k.startswith(HEAD)}
    adapt = getattr(model.head, "adapt_state_dict", None)
    if adapt is not None:
        head = adapt(head)
    return {**{k: v for k, v in weights.items() if not k.startswith(HEAD)}, **{HEAD + k: v for k, v in head.items()}}


def _names(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def warm_start(model: Any, path: Path) -> None:
    """Load the checkpoint's weights into ``model``; ``UserInputError`` naming every parameter that does not fit."""
    _, weights = checkpoint_weights(path)
    mapped = mapped_weights(model, weights)
    target = model.state_dict()
    shapes = [f"{k} (checkpoint {tuple(v.shape)}, this run {tuple(target[k].shape)})" for k, v in mapped.items() if k in target and v.shape != target[k].shape]
    missing = sorted(target.keys() - mapped.keys())
    unexpected = sorted(mapped.keys() - target.keys())
    problems = [f"shapes differ for {_names(shapes)}"] if shapes else []
    problems += [f"the checkpoint lacks {_names(missing)}"] if missing else []
    problems += [f"this model has no {_names(unexpected)}"] if unexpected else []
    if problems:
        raise UserInputError(f"train.init_from {str(path)!r}: its weights do not fit this model: " + "; ".join(problems))
    model.load_state_dict(mapped)


@torch.no_grad()
def compare_warm_start(source: Any, target: Any, batch: dict, seed: int) -> dict:
    """Step-0 differences of a warm-started policy ``target`` from its ``source`` on ``batch``.

    ``input_projection_max_diff``: the largest difference of the heads' action embeddings
    (``action_embeddings``: what each group's noisy actions contribute to the first tokens), or
    None when a head does not offer them. ``loss_diff``: the masked teacher-forced losses with
    the same noise and times. ``equivalent``: both within ``TOLERANCE``.
    """
    losses = []
    for policy in (source, target):
        policy.eval()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            losses.append(float(policy.compute_loss(batch)[0]))
    projection = None
    embed = [getattr(p.head, "action_embeddings", None) for p in (source, target)]
    if all(e is not None for e in embed):
        sample = torch.randn(batch["action"].shape[0], source.horizon, source.head.spec.action_dim, generator=torch.Generator().manual_seed(seed))
        projection = float((embed[0](sample) - embed[1](sample)).abs().max())
    loss_diff = abs(losses[0] - losses[1])
    equivalent = loss_diff <= TOLERANCE * max(1.0, abs(losses[0])) and (projection is None or projection <= TOLERANCE)
    return {
        "source_loss": losses[0],
        "target_loss": losses[1],
        "loss_diff": loss_diff,
        "input_projection_max_diff": projection,
        "equivalent": equivalent,
    }

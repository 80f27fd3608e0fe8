"""A tiny overfit: the head, the loss and the DDIM sampler together learn 4 fixed chunks.

Measured on CPU (torch 2.14, seeds 0-2): after 300 AdamW steps the training loss falls from
~0.23 to ~3e-4, and every DDIM-10 sample lies within 0.028-0.052 (max abs error over its 8 x 2
entries) of its own chunk, while the chunks are >= 1.12 apart. The assertion allows 0.15.

The clean-chunk (``sample``) parameterisation is used here because it fits 4 chunks in a few hundred
steps; epsilon prediction needs several thousand on this toy (its x0 estimate at high noise
divides by sqrt(alpha_bar) ~ 0.14), so for epsilon only the falling loss is checked (measured: the
mean of the last 25 of 150 steps is 0.38 of the first 25's; the assertion allows 0.6).
"""

import math

import pytest
import torch

from polx.components import ObsActionSpec
from polx_ddpm_transformer.config import DDPMConfig, DDPMTransformerConfig
from polx_ddpm_transformer.head import DiffusionTransformer
from polx_ddpm_transformer.objective import DDPMObjective

SPEC = ObsActionSpec(action_dim=2, horizon=8, n_obs_steps=2, cond_dim=4)
TOLERANCE = 0.15


def four_chunks() -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 8, 2) smooth, distinct chunks in [-0.8, 0.8] and (4, 2, 4) one-hot conditions."""
    s = torch.linspace(0, 1, SPEC.horizon)
    chunks = torch.stack(
        [torch.stack([0.8 * torch.cos(math.pi * (s + k / 2)), 0.8 * torch.sin(math.pi * (s / 2 + k / 3))], dim=-1) for k in range(4)]
    )
    conds = torch.eye(4)[:, None, :].expand(4, SPEC.n_obs_steps, 4).clone()
    return chunks, conds


def train(prediction_type: str, steps: int) -> tuple[DiffusionTransformer, DDPMObjective, list[float]]:
    torch.manual_seed(0)
    head = DiffusionTransformer(DDPMTransformerConfig(n_layer=2, n_head=4, n_emb=64, p_drop_attn=0.0), SPEC)
    objective = DDPMObjective(DDPMConfig(prediction_type=prediction_type))
    chunks, conds = four_chunks()
    batch = {"action": chunks.repeat(8, 1, 1), "cond": conds.repeat(8, 1, 1), "action_is_pad": torch.zeros(32, 8, dtype=torch.bool)}
    optimizer = torch.optim.AdamW(head.get_optim_groups(1e-3), lr=2e-3)
    losses = []
    for _ in range(steps):
        loss, metrics = objective.compute_loss(head, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(metrics["mse"])
    return head, objective, losses


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


@pytest.mark.slow  # one of the two slowest tests of the suite (minutes on a busy 2-core CPU): -m slow runs it
def test_ddim10_samples_land_on_their_chunks_after_overfitting():
    head, objective, losses = train("sample", steps=300)
    assert mean(losses[-25:]) < 0.05 * mean(losses[:25])
    chunks, conds = four_chunks()
    head.eval()
    samples = objective.sample(head, conds.repeat(8, 1, 1), 10, torch.Generator().manual_seed(0))  # (32, 8, 2)
    error = (samples - chunks.repeat(8, 1, 1)).abs().amax(dim=(1, 2))  # (32,) per sample
    assert error.max() < TOLERANCE, f"DDIM-10 samples off their chunks by up to {error.max():.3f}"


def test_epsilon_training_brings_the_loss_down():
    _, _, losses = train("epsilon", steps=150)
    assert mean(losses[-25:]) < 0.6 * mean(losses[:25])

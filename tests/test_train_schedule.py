"""The LR schedule's shape, EMA's decay formula and update, and the optimizer's parameter groups."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import toy_plugin  # noqa: E402

from polx.config import EncoderConfig, PolicyConfig, TrainConfig  # noqa: E402
from polx.data.normalizer import Normalizer  # noqa: E402
from polx.errors import PolxError  # noqa: E402
from polx.train.ema import EMA, ema_decay  # noqa: E402
from polx.train.schedule import lr_at  # noqa: E402
from polx.train.trainer import make_optimizer  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    lr=st.floats(1e-6, 1.0),
    min_ratio=st.floats(0.0, 1.0),
    warmup=st.integers(0, 50),
    decay=st.integers(1, 500),
)
def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr(lr, min_ratio, warmup, decay) -> None:
    min_lr, max_steps = lr * min_ratio, warmup + decay
    lrs = [lr_at(s, lr=lr, min_lr=min_lr, warmup_steps=warmup, max_steps=max_steps) for s in range(max_steps + 1)]
    tol = 1e-12 * lr + 1e-15
    for s in range(warmup):
        assert lrs[s] == pytest.approx(lr * (s + 1) / warmup)
    tail = lrs[warmup:]
    assert tail[0] == pytest.approx(lr)
    assert all(a >= b - tol for a, b in zip(tail, tail[1:]))  # never rises after warmup
    assert all(0 <= x <= lr + tol for x in lrs) and all(x >= min_lr - tol for x in tail)
    assert lrs[-1] == pytest.approx(min_lr, abs=tol)
    mid = warmup + decay / 2
    if float(mid).is_integer():
        assert lrs[int(mid)] == pytest.approx((lr + min_lr) / 2)
    # past the end the rate stays at min_lr
    assert lr_at(max_steps + 10, lr=lr, min_lr=min_lr, warmup_steps=warmup, max_steps=max_steps) == pytest.approx(min_lr, abs=tol)


def _diffusion_policy_decay(optimization_step: int, power=0.75, max_value=0.9999, inv_gamma=1.0, update_after_step=0) -> float:
    """EMAModel.get_decay as published in diffusion_policy (min_value 0), written out independently."""
    step = max(0, optimization_step - update_after_step - 1)
    value = 1 - (1 + step / inv_gamma) ** -power
    if step <= 0:
        return 0.0
    return max(0.0, min(value, max_value))


@given(st.integers(0, 10**7), st.floats(0.1, 2.0), st.floats(0.5, 0.99999))
def test_ema_decay_is_diffusion_policy_formula(step: int, power: float, max_value: float) -> None:
    assert ema_decay(step, power, max_value) == _diffusion_policy_decay(step, power, max_value)


def test_ema_decay_values() -> None:
    assert [ema_decay(s) for s in (0, 1)] == [0.0, 0.0]
    assert ema_decay(2) == pytest.approx(1 - 2**-0.75)
    assert ema_decay(10**9) == 0.9999


def test_ema_update_averages_trained_weights_and_copies_the_rest() -> None:
    def make() -> nn.Module:
        m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
        m[1].weight.requires_grad_(False)
        m.register_buffer("stat", torch.zeros(2))
        return m

    model, shadow = make(), make()
    shadow.load_state_dict(model.state_dict())
    ema = EMA(shadow)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model.stat.add_(1.0)
        decay = _diffusion_policy_decay(step)
        for name, value in model.state_dict().items():
            trained = name in ("0.weight", "0.bias", "1.bias")
            expected[name] = decay * expected[name] + (1 - decay) * value if trained else value.clone()
        ema.update(model)
    for name, value in ema.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)
    assert ema.optimization_step == 5 and not ema.model.training


def _toy_policy(hidden: int = 8):
    from polx.components import ObsActionSpec
    from polx.policy.encoder import ObsEncoder
    from polx.policy.policy import Policy

    shape_meta = {"obs": {"pos": {"shape": [2], "type": "low_dim"}}, "action": {"shape": [2]}}
    encoder = ObsEncoder(shape_meta, EncoderConfig())
    spec = ObsActionSpec(action_dim=2, horizon=4, n_obs_steps=1, cond_dim=encoder.cond_dim)
    head = toy_plugin.ToyMLP(toy_plugin.ToyMLPConfig(hidden=hidden), spec)
    stats = {k: (torch.zeros(2), torch.ones(2), torch.zeros(2)) for k in ("pos", "action")}
    return Policy(
        encoder=encoder, head=head, normalizer=Normalizer(stats), objective=None, hook=None,
        policy_config=PolicyConfig(horizon=4, n_obs_steps=1, n_action_steps=2),
    )


def test_optimizer_uses_head_groups_and_config() -> None:
    policy = _toy_policy()
    opt = make_optimizer(policy, TrainConfig(weight_decay=0.1, betas=(0.8, 0.9), lr=0.01), EncoderConfig())
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # no camera: no encoder group
    assert all(g["betas"] == (0.8, 0.9) and g["lr"] == 0.01 for g in opt.param_groups)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(policy.parameters()))


def test_optimizer_refuses_groups_that_miss_parameters() -> None:
    policy = _toy_policy()
    policy.head.get_optim_groups = lambda wd: [{"params": list(policy.head.parameters())[:1], "weight_decay": wd}]
    with pytest.raises(PolxError, match="exactly once"):
        make_optimizer(policy, TrainConfig(), EncoderConfig())

"""The policy's hook calls and the chunk runtime: exactly the right slice of each chunk is executed.

A recording plugin answers ``sample`` with chunks whose values name the call and the time index,
and ``compute_loss`` by recording the batch, so what the core sends and executes is visible.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import toy_plugin  # noqa: E402

from polx import hookimpl  # noqa: E402
from polx.config import resolve_config  # noqa: E402
from polx.data.normalizer import Normalizer  # noqa: E402
from polx.plugins import load_plugins  # noqa: E402
from polx.policy.policy import build_policy  # noqa: E402
from polx.policy.runtime import ChunkRuntime  # noqa: E402

SHIFT, SCALE, BIAS = 0.5, 0.25, -1.0  # action normalizer: unnormalize(x) = (x - BIAS) / SCALE + SHIFT


def unnormalize(x):
    return (x - BIAS) / SCALE + SHIFT


class Recorder:
    def __init__(self) -> None:
        self.conds: list[torch.Tensor] = []
        self.batches: list[dict] = []

    @hookimpl
    def sample(self, objective, head, cond, num_steps, generator):
        self.conds.append(cond.clone())
        k = len(self.conds)
        spec = head.spec
        chunk = 1000.0 * k + torch.arange(spec.horizon, dtype=torch.float32)  # value = 1000 * call + t
        return chunk[None, :, None].expand(cond.shape[0], spec.horizon, spec.action_dim).clone()

    @hookimpl
    def compute_loss(self, objective, head, batch):
        self.batches.append(batch)
        return batch["action"].sum() * 0.0, {"seen": 1.0}


def make_policy(horizon: int, n_obs: int, n_action: int, *extra: str):
    recorder = Recorder()
    plugins = load_plugins(entry_points=[], extra=[("toy", toy_plugin), ("recorder", recorder)])
    config = resolve_config(
        plugins, head="toy_mlp", env="toy_reach", loggers=(),
        overrides=[f"policy.horizon={horizon}", f"policy.n_obs_steps={n_obs}", f"policy.n_action_steps={n_action}", *extra],
    )
    adapter = plugins.registry.get("env", "toy_reach").build(config.env)
    identity = (torch.zeros(2), torch.ones(2), torch.zeros(2))
    stats = {"pos": identity, "goal": (torch.full((2,), 1.0), torch.full((2,), 2.0), torch.zeros(2)),
             "action": (torch.full((2,), SHIFT), torch.full((2,), SCALE), torch.full((2,), BIAS))}
    return build_policy(plugins, config, adapter.shape_meta, Normalizer(stats)), recorder


@st.composite
def chunk_shapes(draw):
    horizon = draw(st.integers(1, 10))
    n_obs = draw(st.integers(1, horizon))
    n_action = draw(st.integers(1, horizon - n_obs + 1))
    return horizon, n_obs, n_action, draw(st.integers(1, 25))


@settings(max_examples=40, deadline=None)
@given(chunk_shapes())
def test_runtime_executes_the_slice_from_the_newest_observation(shapes) -> None:
    horizon, n_obs, n_action, n_steps = shapes
    policy, rec = make_policy(horizon, n_obs, n_action)
    runtime = ChunkRuntime(policy)
    executed = [runtime.act({"pos": np.array([j, 0], np.float32), "goal": np.zeros(2, np.float32)}) for j in range(n_steps)]

    assert len(rec.conds) == runtime.n_chunks == math.ceil(n_steps / n_action)  # one sample call per chunk
    for j, action in enumerate(executed):
        call, i = j // n_action + 1, j % n_action
        assert action.shape == (2,)
        np.testing.assert_allclose(action, unnormalize(1000.0 * call + (n_obs - 1) + i))
    for k, cond in enumerate(rec.conds):
        start = k * n_action  # env step at which chunk k+1 was predicted
        expected_pos = [max(0, start - n_obs + 1 + m) for m in range(n_obs)]  # padded by the first obs
        assert cond.shape == (1, n_obs, 4)
        assert cond[0, :, 0].tolist() == expected_pos
        torch.testing.assert_close(cond[0, :, 2:], torch.full((n_obs, 2), -2.0))  # goal normalized: (0 - 1) * 2


def test_reset_clears_history_and_queue() -> None:
    policy, rec = make_policy(8, 3, 4)
    runtime = ChunkRuntime(policy)
    for j in range(2):
        runtime.act({"pos": np.array([j, 0], np.float32), "goal": np.zeros(2, np.float32)})
    runtime.reset(seed=3)
    action = runtime.act({"pos": np.array([50, 0], np.float32), "goal": np.zeros(2, np.float32)})
    assert len(rec.conds) == 2  # a new chunk although 2 queued actions were left
    assert rec.conds[1][0, :, 0].tolist() == [50.0, 50.0, 50.0]
    np.testing.assert_allclose(action, unnormalize(2000.0 + 2))


def test_predict_action_slices_and_unnormalizes() -> None:
    policy, _ = make_policy(10, 3, 5)
    obs = {"pos": torch.zeros(4, 3, 2), "goal": torch.zeros(4, 3, 2)}
    out = policy.predict_action(obs)
    assert out["action_pred"].shape == (4, 10, 2) and out["action"].shape == (4, 5, 2)
    torch.testing.assert_close(out["action_pred"][0, :, 0], unnormalize(1000.0 + torch.arange(10.0)))
    torch.testing.assert_close(out["action"], out["action_pred"][:, 2:7])


def test_compute_loss_sends_normalized_action_cond_and_masks() -> None:
    policy, rec = make_policy(6, 2, 3)
    batch = {
        "obs": {"pos": torch.randn(5, 2, 2), "goal": torch.randn(5, 2, 2)},
        "action": torch.randn(5, 6, 2),
        "action_is_pad": torch.zeros(5, 6, dtype=torch.bool),
    }
    policy.compute_loss(batch)
    sent = rec.batches[-1]
    assert set(sent) == {"action", "cond", "action_is_pad", "valid"}
    assert sent["valid"].shape == (5, 6, 2) and sent["valid"].all()  # nothing padded, no mask
    torch.testing.assert_close(sent["action"], (batch["action"] - SHIFT) * SCALE + BIAS)
    torch.testing.assert_close(sent["cond"][..., :2], batch["obs"]["pos"])
    torch.testing.assert_close(sent["cond"][..., 2:], (batch["obs"]["goal"] - 1.0) * 2.0)
    policy.compute_loss({**batch, "action_mask": torch.tensor([1.0, 0.0])})
    torch.testing.assert_close(rec.batches[-1]["action_mask"], torch.tensor([1.0, 0.0]))
    assert rec.batches[-1]["valid"][..., 0].all() and not rec.batches[-1]["valid"][..., 1].any()  # one valid mask, made here


def test_camera_policy_trains_and_acts_through_the_real_objective() -> None:
    """The toy objective (no recorder answer for this plugin set) with a ResNet camera."""
    plugins = load_plugins(entry_points=[], extra=[("toy", toy_plugin)])
    config = resolve_config(
        plugins, head="toy_mlp", env="toy_reach", loggers=(),
        overrides=["env.image=true", "encoder.crop_shape=[12, 12]", "policy.horizon=4", "policy.n_obs_steps=2", "policy.n_action_steps=2"],
    )
    adapter = plugins.registry.get("env", "toy_reach").build(config.env)
    identity = (torch.zeros(2), torch.ones(2), torch.zeros(2))
    policy = build_policy(plugins, config, adapter.shape_meta, Normalizer({"pos": identity, "goal": identity, "action": identity}))
    batch = {
        "obs": {"image": torch.rand(3, 2, 3, 16, 16), "pos": torch.randn(3, 2, 2), "goal": torch.randn(3, 2, 2)},
        "action": torch.randn(3, 4, 2),
        "action_is_pad": torch.zeros(3, 4, dtype=torch.bool),
    }
    loss, metrics = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and "flow_mse" in metrics
    assert policy.encoder.backbones["image"].conv1.weight.grad is not None  # the encoder is trained too
    env = adapter.make_env()
    obs, _ = env.reset(seed=0)
    runtime = ChunkRuntime(policy.eval())
    actions = []
    for _ in range(3):
        actions.append(runtime.act(obs))
        obs, *_ = env.step(actions[-1])
    assert runtime.n_chunks == 2 and all(a.shape == (2,) for a in actions)


def test_sampling_is_reproducible_with_a_seeded_runtime() -> None:
    plugins = load_plugins(entry_points=[], extra=[("toy", toy_plugin)])
    config = resolve_config(plugins, head="toy_mlp", env="toy_reach", loggers=(), overrides=["policy.horizon=4", "policy.n_action_steps=2"])
    adapter = plugins.registry.get("env", "toy_reach").build(config.env)
    identity = (torch.zeros(2), torch.ones(2), torch.zeros(2))
    policy = build_policy(plugins, config, adapter.shape_meta, Normalizer({"pos": identity, "goal": identity, "action": identity}))
    runtime = ChunkRuntime(policy.eval())
    obs = {"pos": np.zeros(2, np.float32), "goal": np.zeros(2, np.float32)}
    first = [runtime.reset(seed=5) or runtime.act(obs) for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    runtime.reset(seed=6)
    assert not np.array_equal(runtime.act(obs), first[0])
    with pytest.raises(KeyError):
        runtime.reset()
        runtime.act({"pos": np.zeros(2, np.float32)})  # a missing observation key is an error, not silence

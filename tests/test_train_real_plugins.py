"""The project's own plugins through the trainer, where installed: the real heads and objectives on
the toy env, and PushT (keypoints) on a tiny generated dataset. Tiny sizes: wiring, not quality."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import pytest

import toy_plugin  # noqa: E402

from polx.eval.evaluate import evaluate_checkpoint  # noqa: E402
from polx.plugins import load_plugins  # noqa: E402
from polx.base.checkpoint import LATEST, load_checkpoint  # noqa: E402

TINY_HEADS = {
    "imf_attnres": ["head.n_emb=32", "head.n_layer=2", "head.n_head=2", "head.n_kv_head=1"],
    "ddpm_transformer": ["head.n_emb=32", "head.n_layer=1", "head.n_head=2", "objective.num_train_timesteps=10", "objective.num_inference_steps=4"],
}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=list(metadata.entry_points(group="polx")), extra=[("toy", toy_plugin)])


def _require(plugins, kind: str, name: str) -> None:
    if name not in plugins.registry.names(kind):
        pytest.skip(f"{kind} {name!r} is not registered (its plugin is not installed or failed to load)")


@pytest.mark.parametrize("head", sorted(TINY_HEADS))
def test_real_head_trains_and_evaluates_on_the_toy_env(plugins, head: str, tmp_path: Path) -> None:
    _require(plugins, "head", head)
    from polx.runs import prepare_training
    from polx.train.trainer import run_training

    overrides = toy_plugin.toy_overrides(
        tmp_path / "cache", "train.max_steps=2", "train.val_every=2", "train.val_batches=1", "eval.rollout_every=0",
        "eval.n_test=1", "eval.n_train=0", "eval.max_steps=8", *TINY_HEADS[head],
    )
    plan = prepare_training(plugins, head=head, env="toy_reach", out=tmp_path / "runs", overrides=overrides, argv=["test"])
    run = run_training(plan)
    records = [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines()]
    merged = {k: v for r in records for k, v in r.items()}
    assert {"train_loss", "val_loss", "val_action_mse", "train_action_mse_error", "test_mean_score"} <= set(merged)
    state = load_checkpoint(run / "checkpoints" / LATEST)
    assert state["spec"]["head"] == head and state["spec"]["objective"] == plugins.registry.get("head", head).default_objective
    report = evaluate_checkpoint(plugins, run / "checkpoints" / LATEST, episodes=1, out=tmp_path / "eval")
    assert 0.0 <= report["metrics"]["test_mean_score"] <= 1.0


def test_pusht_keypoints_end_to_end(plugins, tmp_path: Path) -> None:
    _require(plugins, "env", "pusht")
    head = next((h for h in ("imf_attnres", "ddpm_transformer") if h in plugins.registry.names("head")), None)
    if head is None:
        pytest.skip("no real head is registered")
    from polx.runs import build_env_adapter, prepare_training
    from polx.train.trainer import run_training

    data = tmp_path / "demos.zarr"
    build_env_adapter(plugins, "pusht", ["env.obs_type=keypoints", "env.demo_max_steps=40"]).generate_demos(
        data, 2, seed=0, keep_all=True, progress=False
    )
    overrides = [
        "env.obs_type=keypoints", "train.max_steps=2", "train.batch_size=4", "train.progress=false", "train.val_every=0",
        "data.val_ratio=0.0", "eval.n_test=1", "eval.n_train=0", "eval.max_steps=10", "eval.n_vis=1", *TINY_HEADS[head],
    ]
    plan = prepare_training(plugins, head=head, env="pusht", dataset=data, out=tmp_path / "runs", overrides=overrides, argv=["test"])
    run = run_training(plan)
    assert (run / "media" / "rollout_2" / "episode_0.png").stat().st_size > 0
    last = json.loads((run / "logs.json.txt").read_text().splitlines()[-1])
    assert 0.0 <= last["test_mean_score"] <= 1.0 and last["global_step"] == 2

"""The project's real plugins end to end at tiny sizes, through the ``polx`` command line.

- {imf_attnres, ddpm_transformer} x PushT {image, keypoints}: ``polx train`` then ``polx eval``;
  the evaluation of the checkpoint replays the training's final rollout exactly.
- RoboIMI with imf_attnres: trains, validates, rolls out, and the trajectory PNG (red EE paths)
  reaches every logger as an image path.

Wiring, not quality: two training steps, one short rollout. Datasets are generated once per
module by the env adapters' own expert (``generate_demos``) into a temporary directory.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from attrs import define
from click.testing import CliRunner
from PIL import Image

from polx import cli, hookimpl
from polx.plugins import load_plugins
from polx.base.checkpoint import LATEST, load_checkpoint

TINY_HEADS = {
    "imf_attnres": ["head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1"],
    "ddpm_transformer": ["head.n_emb=32", "head.n_layer=1", "head.n_head=2",
                         "objective.num_train_timesteps=10", "objective.num_inference_steps=2"],
}
PUSHT_RENDER = 24  # px: the dataset's frames, so image runs need env.render_size=24
PUSHT_OBS = {
    "image": ["env.obs_type=image", f"env.render_size={PUSHT_RENDER}", "encoder.crop_shape=[20,20]"],
    "keypoints": ["env.obs_type=keypoints"],
}
# two steps, validation and the end-of-training rollout both at step 2, one 8-step test episode
TINY_RUN = [
    "train.max_steps=2", "train.batch_size=4", "train.progress=false", "train.val_every=2", "train.val_batches=1",
    "data.val_ratio=0.5", "eval.n_test=1", "eval.n_train=0", "eval.max_steps=8", "eval.n_vis=1", "encoder.feature_dim=32",
]


# ---------------------------------------------------------------------------------------------
# an in-process logger that records what every logger is handed


@define(frozen=True, kw_only=True)
class RecorderConfig:
    enabled: bool = True


class Recorder:
    """Appends each ``log`` call to ``recorded.jsonl`` in the run directory."""

    def __init__(self, config: RecorderConfig, run):
        self.file = open(Path(run.dir) / "recorded.jsonl", "a")

    def log(self, step, metrics, images):
        self.file.write(json.dumps({"step": step, "metrics": dict(metrics), "images": dict(images)}) + "\n")
        self.file.flush()

    def close(self):
        self.file.close()


class RecorderPlugin:
    @hookimpl
    def register_components(self, register):
        register("logger", "recorder", RecorderConfig, Recorder, help="records every log call (tests)")


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def plugins():
    loaded = load_plugins(entry_points=list(metadata.entry_points(group="polx")), extra=[("e2e_recorder", RecorderPlugin())])
    names = {kind: loaded.registry.names(kind) for kind in ("head", "env", "logger")}
    missing = [f"{kind} {n}" for kind, want in (("head", TINY_HEADS), ("env", ("pusht", "roboimi")), ("logger", ("json",)))
               for n in want if n not in names[kind]]
    if missing:
        pytest.skip(f"the project's plugins are not all installed: {', '.join(missing)} missing")
    return loaded


@pytest.fixture(scope="module")
def pusht_demos(plugins, tmp_path_factory) -> Path:
    """Two expert episodes of 30 steps at 24 px; one dataset serves image and keypoint runs."""
    from polx.runs import build_env_adapter

    path = tmp_path_factory.mktemp("pusht") / "demos.zarr"
    adapter = build_env_adapter(plugins, "pusht", [f"env.render_size={PUSHT_RENDER}", "env.demo_max_steps=30"])
    adapter.generate_demos(path, 2, seed=0, keep_all=True, progress=False)
    return path


@pytest.fixture(scope="module")
def roboimi_demos(plugins, tmp_path_factory) -> Path:
    """Two expert episodes cut at 10 steps, three 16 px cameras."""
    # torchvision (which imports triton) must be loaded before MuJoCo's EGL/llvmpipe context
    # exists in this process: importing triton after it segfaults (LLVM symbol clash)
    import torchvision  # noqa: F401

    from polx.runs import build_env_adapter

    path = tmp_path_factory.mktemp("roboimi") / "demos.zarr"
    adapter = build_env_adapter(plugins, "roboimi", ["env.image_size=16", "env.max_steps=10"])
    adapter.generate_demos(path, 2, seed=0, keep_all=True, progress=False)
    return path


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# PushT: both heads x both observation types


@pytest.mark.parametrize("obs_type", sorted(PUSHT_OBS))
@pytest.mark.parametrize("head", sorted(TINY_HEADS))
def test_pusht_trains_then_evaluates(plugins, pusht_demos: Path, head: str, obs_type: str, tmp_path: Path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    train = runner.invoke(cli.main, [
        "train", "--head", head, "--env", "pusht", "--dataset", str(pusht_demos), "--run-dir", str(run),
        *PUSHT_OBS[obs_type], *TINY_RUN, *TINY_HEADS[head],
    ])
    assert train.exit_code == 0, train.output

    records = read_log(run)
    merged = {k: v for r in records for k, v in r.items()}
    assert {"train_loss", "lr", "val_loss", "val_action_mse", "test_mean_score"} <= set(merged)
    assert all(np.isfinite(v) for r in records for v in r.values())
    assert records[-1]["global_step"] == 2
    state = load_checkpoint(run / "checkpoints" / LATEST)
    expected_obs = {"image": {"image": [3, PUSHT_RENDER, PUSHT_RENDER], "agent_pos": [2]}, "keypoints": {"keypoints": [20]}}
    assert state["spec"]["head"] == head and state["spec"]["env"] == "pusht"
    assert state["spec"]["objective"] == plugins.registry.get("head", head).default_objective
    assert state["spec"]["obs"] == expected_obs[obs_type] and state["global_step"] == 2
    rollout_png = run / "media" / "rollout_2" / "episode_0.png"

    out = tmp_path / "eval"
    evaluated = runner.invoke(cli.main, ["eval", "--checkpoint", str(run / "checkpoints" / LATEST), "--episodes", "1", "--out", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "test_mean_score:" in evaluated.output
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_test"] == 1 and report["global_step"] == 2 and report["weights"] == "ema"
    assert 0.0 <= report["metrics"]["test_mean_score"] <= 1.0
    # same EMA weights, same seed (100000): the evaluation repeats the training's final rollout
    rollout = next(r for r in records if "test_mean_score" in r)
    assert report["metrics"]["test/sim_max_reward_100000"] == rollout["test/sim_max_reward_100000"]
    assert (out / "episode_0.png").read_bytes() == rollout_png.read_bytes()  # the same pusher path, drawn
    assert Image.open(out / "episode_0.png").size[0] >= 64


# ---------------------------------------------------------------------------------------------
# RoboIMI: trains, validates, rolls out, and the trajectory image reaches the loggers


def red_pixels(png: Path) -> int:
    """Pixels that are clearly red: the EE-path capsules (the scene itself has none)."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(((rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum())


def test_roboimi_trains_validates_and_draws_trajectories(plugins, roboimi_demos: Path, tmp_path: Path) -> None:
    from polx.runs import prepare_training
    from polx.train.trainer import run_training

    overrides = [
        "env.image_size=16", "env.trajectory_image_size=64", "encoder.crop_shape=[12,12]",
        "policy.horizon=4", "policy.n_action_steps=2", "eval.rollout_every=2", "eval.max_steps=4",
        *TINY_RUN, *TINY_HEADS["imf_attnres"],
    ]
    plan = prepare_training(plugins, head="imf_attnres", env="roboimi", dataset=roboimi_demos, loggers=["recorder"],
                            run_dir=tmp_path / "run", overrides=overrides, argv=["test"])
    assert plan.config.components.loggers == ("json", "recorder")
    run = run_training(plan)

    records = read_log(run)
    merged = {k: v for r in records for k, v in r.items()}
    assert {"train_loss", "val_loss", "val_action_mse", "train_action_mse_error", "test_mean_score"} <= set(merged)
    png = run / "media" / "rollout_2" / "episode_0.png"
    width, height = Image.open(png).size
    assert width == 64 and height > 64  # the 64 px render with the caption strip (seed, score) above it
    assert red_pixels(png) >= 10, "the executed EE paths are not drawn in red"

    recorded = [json.loads(line) for line in (run / "recorded.jsonl").read_text().splitlines()]
    with_images = [r for r in recorded if r["images"]]
    assert len(with_images) == 1  # one rollout (eval.at_end does not repeat the one at step 2)
    assert with_images[0]["images"] == {"test/trajectory_0": str(png)}
    assert with_images[0]["step"] == 2 and "test_mean_score" in with_images[0]["metrics"]
    # the JSON log got the same record (scalars only: it writes no images)
    (json_line,) = [r for r in records if "test_mean_score" in r]
    assert json_line["global_step"] == 2
    assert json_line["test_mean_score"] == with_images[0]["metrics"]["test_mean_score"]
    assert len(records) == len(recorded)

"""Every phase of a run says when it starts and finishes, also when stderr is a file: validation,
checkpoint writes and rollouts one line each way; a slow first step is reported before
``train.log_every``; image observations on a CPU at GPU-sized step counts are warned about at start.

The runs are real (toy plugin, in this process: pytest's stderr is not a TTY, as under nohup);
the thresholds are lowered so that the few-second run meets them.
"""

from __future__ import annotations

import re

import sys
from pathlib import Path

import pytest

import toy_plugin  # noqa: E402

from polx.plugins import load_plugins  # noqa: E402
from polx.runs import prepare_training  # noqa: E402
from polx.train import trainer  # noqa: E402


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=[], extra=[("toy", toy_plugin)])


def run(plugins, tmp_path, *extra):
    overrides = [o for o in toy_plugin.toy_overrides(tmp_path / "cache", "train.max_steps=4", "train.log_every=4", "train.val_every=2",
                                                     "train.checkpoint_every=2", "eval.rollout_every=0", "eval.n_test=1",
                                                     "eval.n_train=0", "eval.n_vis=0", "eval.max_steps=4", *extra)
                 if o != "train.progress=false"]
    plan = prepare_training(plugins, head="toy_mlp", env="toy_reach", run_dir=tmp_path / "run", overrides=overrides, argv=["test"])
    return trainer.run_training(plan)


def polx_lines(err: str) -> list[str]:
    return [line.removeprefix("polx: ") for line in err.splitlines() if line.startswith("polx: ")]


def test_each_phase_prints_a_line_as_it_starts_and_finishes(plugins, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(trainer, "FIRST_PROGRESS_S", 0.0)  # every step is "slow"
    run(plugins, tmp_path)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("polx: step ")]
    steps = [line.split()[2] for line in lines]
    assert steps[0] == "1/4", err  # before log_every=4
    texts = polx_lines(err)
    for phase, start, done in (("validation", "started (2 batches)", "done in "), ("checkpoint", "writing latest.ckpt", "written in "),
                               ("rollouts", "started, 1 episodes in 1 process", "done in ")):
        started = [i for i, t in enumerate(texts) if t.startswith(phase) and t.split(": ", 1)[1].startswith(start)]
        finished = [i for i, t in enumerate(texts) if t.startswith(phase) and t.split(": ", 1)[1].startswith(done)]
        assert started and len(started) == len(finished), (start, texts)
        assert all(s < f for s, f in zip(started, finished)), texts
    assert [t.split(":")[0] for t in texts if t.startswith("validation")] == ["validation at step 2"] * 2 + ["validation at step 4"] * 2
    # each rollout episode says it finished, between the rollout's start and done lines
    episodes = [i for i, t in enumerate(texts) if re.fullmatch(r"rollout episode 1/1: test seed \d+, score \d\.\d{3}, \d+ steps", t)]
    rollouts = [i for i, t in enumerate(texts) if t.startswith("rollouts at step")]
    assert len(episodes) * 2 == len(rollouts) and all(rollouts[2 * k] < e < rollouts[2 * k + 1] for k, e in enumerate(episodes)), texts
    assert "\r" not in err


def test_fast_steps_print_no_early_line(plugins, tmp_path, capfd):
    run(plugins, tmp_path)
    steps = [line.split()[2] for line in capfd.readouterr().err.splitlines() if line.startswith("polx: step ") and "/" in line.split()[2]]
    assert steps == ["4/4"]


def test_images_on_a_cpu_for_many_steps_are_warned_about_at_start(plugins, tmp_path, capfd, monkeypatch):
    quiet = ("train.val_every=0", "train.checkpoint_every=0", "eval.at_end=false")
    image = ("env.image=true", "encoder.backbone=convnet", "encoder.crop_shape=[12, 12]", *quiet)
    run(plugins, tmp_path / "cheap", *image)  # 4 steps of 12 px frames: seconds, no warning
    assert "warning" not in capfd.readouterr().err
    # the projection: 4 steps x batch x n_obs_steps frames at convnet's rate scaled to 12x12 px
    hours = 4 * 4 * 2 / (trainer.CPU_FRAMES_PER_S_AT_84["convnet"] * 84 * 84 / (12 * 12)) / 3600
    monkeypatch.setattr(trainer, "CPU_IMAGE_HOURS", hours * 0.99)
    run(plugins, tmp_path / "costly", *image, "train.batch_size=4")
    err = capfd.readouterr().err
    assert "polx: warning: 4 steps of the convnet encoder on image observations (image) on a CPU project to about 0 hours" in err
    monkeypatch.setattr(trainer, "CPU_IMAGE_HOURS", hours * 1.01)
    run(plugins, tmp_path / "just_under", *image, "train.batch_size=4")
    assert "warning" not in capfd.readouterr().err
    monkeypatch.setattr(trainer, "CPU_IMAGE_HOURS", 0.0)
    run(plugins, tmp_path / "low_dim", *quiet)
    assert "warning" not in capfd.readouterr().err

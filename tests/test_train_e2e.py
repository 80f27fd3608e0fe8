"""End to end on CPU with the toy plugin: train, run directory, resume, failure modes, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

import toy_plugin  # noqa: E402

from polx import cli  # noqa: E402
from polx.errors import DatasetError, PolxError, UserInputError  # noqa: E402
from polx.base.checkpoint import LATEST, load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def plugins():
    return toy_plugin.toy_plugins()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def run(plugins, cache, tmp_path_factory) -> Path:
    """One 12-step run shared by the tests that only read it."""
    return toy_plugin.train_toy(plugins, tmp_path_factory.mktemp("runs"), cache)


def test_run_directory_is_complete(run: Path, plugins) -> None:
    assert (run / "config.yaml").is_file() and (run / "manifest.json").is_file()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["components"]["head"] == "toy_mlp" and config["train"]["max_steps"] == 12
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["command"] == ["polx", "train", "(test)"]
    assert manifest["versions"]["torch"] == torch.__version__
    assert "toy" in manifest["versions"]["plugins"] and manifest["host"] and manifest["start_time"]
    assert "git" in manifest and manifest["world_size"] == 1
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert LATEST in names
    topk = [n for n in names if n.startswith("epoch=")]
    assert 1 <= len(topk) <= 2 and all("-test_mean_score=" in n for n in topk)
    pngs = sorted(str(p.relative_to(run)) for p in (run / "media" ).glob("rollout_*/*.png"))
    assert pngs == [f"media/rollout_{s}/episode_{k}.png" for s in (12, 6) for k in (0, 1)]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 12
    assert 0.0 <= summary["metrics"]["test_mean_score"] <= 1.0 and "val_loss" in summary["metrics"]
    assert (run / "media" / "curves.png").stat().st_size > 1000


def test_latest_after_a_rollout_is_the_top_k_file_linked_not_a_second_copy(run: Path) -> None:
    """Rollouts at steps 6 and 12, both kept (topk=2): latest.ckpt at step 12 is the step-12 top-k
    file (one inode), while the step-6 file, linked as latest at step 6, kept its own bytes when
    latest was replaced."""
    ckpts = run / "checkpoints"
    by_step = {int(p.name.split("step=")[1][:7]): p for p in ckpts.glob("epoch=*.ckpt")}
    assert sorted(by_step) == [6, 12]
    assert (ckpts / LATEST).samefile(by_step[12])
    assert by_step[6].stat().st_nlink == 1 and load_checkpoint(by_step[6])["global_step"] == 6
    assert load_checkpoint(ckpts / LATEST)["global_step"] == 12


def test_every_record_has_step_and_epoch_and_the_named_metrics(run: Path, plugins) -> None:
    records = toy_plugin.read_records(run)
    assert all("epoch" in r["metrics"] for r in records)
    merged: dict[int, dict] = {}
    for r in records:
        merged.setdefault(r["step"], {}).update(r["metrics"])
    assert sorted(merged) == [2, 4, 6, 8, 10, 12]
    assert {"train_loss", "lr"} <= set(merged[2])
    assert {"val_loss", "val_action_mse", "train_action_mse_error", "test_mean_score", "train_mean_score"} <= set(merged[6])
    assert {"test/sim_max_reward_100000", "test_success_rate", "train/sim_max_reward_0"} <= set(merged[12])
    images = [r["images"] for r in records if r["images"]]
    assert [sorted(i.values()) for i in images][0] == [str(run / f"media/rollout_6/episode_{k}.png") for k in (0, 1)]
    lines = [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines()]
    assert len(lines) == len(records)
    assert all(isinstance(line["global_step"], int) and isinstance(line["epoch"], int) for line in lines)


def test_checkpoint_holds_the_whole_training_state(run: Path) -> None:
    state = load_checkpoint(run / "checkpoints" / LATEST)  # weights_only=True inside
    assert state["global_step"] == 12
    assert state["spec"]["head"] == "toy_mlp" and state["spec"]["env"] == "toy_reach"
    assert {"model", "ema", "optimizer", "scheduler", "rng", "config", "polx_version"} <= set(state)
    assert any(k.startswith("normalizer.") for k in state["model"])
    assert state["ema"]["optimization_step"] == 12
    assert state["config"]["train"]["max_steps"] == 12


def test_resume_continues_steps_and_history(plugins, cache, tmp_path: Path) -> None:
    run = toy_plugin.train_toy(plugins, tmp_path, cache, "train.max_steps=6", "eval.at_end=false")
    before = toy_plugin.read_records(run)
    toy_plugin.train_toy(plugins, tmp_path, cache, "train.max_steps=10", resume_dir=run)
    after = toy_plugin.read_records(run)
    assert after[: len(before)] == before  # history kept, appended to
    new_steps = [r["step"] for r in after[len(before) :]]
    assert new_steps and min(new_steps) == 8 and max(new_steps) == 10
    assert load_checkpoint(run / "checkpoints" / LATEST)["global_step"] == 10
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 10
    manifest = json.loads((run / "manifest.json").read_text())
    assert [r["from_step"] for r in manifest["resumes"]] == [6]
    with pytest.raises(UserInputError, match="already reached step 10"):
        toy_plugin.train_toy(plugins, tmp_path, cache, resume_dir=run)


def test_resumed_run_equals_uninterrupted_run(plugins, cache, tmp_path: Path) -> None:
    """Same data order (across epochs), RNG and optimizer state: 4 + 4 steps give the weights of 8 steps."""
    # a constant LR (min_lr = lr), so the 4-step first leg has the same schedule as the whole run
    # batches of 16 of the 52 training windows: 3 per epoch, so the resume at step 4 lands mid-epoch
    common = ("train.batch_size=16", "eval.rollout_every=0", "eval.at_end=false", "train.val_every=0", "train.warmup_steps=0", "train.min_lr=0.0001")
    # a loader worker process for the whole run: batches must not depend on where they are gathered
    whole = toy_plugin.train_toy(plugins, tmp_path / "a", cache, "train.max_steps=8", "train.num_workers=1", *common)
    part = toy_plugin.train_toy(plugins, tmp_path / "b", cache, "train.max_steps=4", *common)
    toy_plugin.train_toy(plugins, tmp_path / "b", cache, "train.max_steps=8", resume_dir=part)
    a = load_checkpoint(whole / "checkpoints" / LATEST)
    b = load_checkpoint(part / "checkpoints" / LATEST)
    assert (a["epoch"], a["batch_in_epoch"]) == (b["epoch"], b["batch_in_epoch"]) and a["epoch"] >= 2
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], msg=key)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(plugins, cache, tmp_path: Path) -> None:
    with pytest.raises(PolxError, match=r"non-finite loss \(nan\) at step 9 .*latest\.ckpt"):
        toy_plugin.train_toy(plugins, tmp_path, cache, "objective.nan_at_call=9", "eval.rollout_every=0")
    (run,) = tmp_path.glob("*/*")
    state = load_checkpoint(run / "checkpoints" / LATEST)
    assert state["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_run_killed_before_its_summary_finishes_on_resume(plugins, cache, run: Path, tmp_path: Path) -> None:
    """Killed between the final checkpoint and summary.json: --resume only finishes, no retraining."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "summary.json").unlink()
    rollouts_before = sorted(p.name for p in (copy / "media").glob("rollout_*"))
    toy_plugin.train_toy(plugins, tmp_path, cache, resume_dir=copy)
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["global_step"] == 12 and "test_mean_score" in summary["metrics"]
    assert sorted(p.name for p in (copy / "media").glob("rollout_*")) == rollouts_before  # no second rollout
    with pytest.raises(UserInputError, match="already reached step 12"):
        toy_plugin.train_toy(plugins, tmp_path, cache, resume_dir=copy)


def test_resume_after_a_crash_logs_each_step_once(plugins, cache, tmp_path: Path) -> None:
    """Steps logged after the last checkpoint by the crashed process are superseded, not duplicated."""
    with pytest.raises(PolxError, match="at step 9"):
        toy_plugin.train_toy(plugins, tmp_path, cache, "objective.nan_at_call=9", "eval.rollout_every=0")
    (run,) = tmp_path.glob("*/*")
    steps = [json.loads(line)["global_step"] for line in (run / "logs.json.txt").read_text().splitlines()]
    assert 8 in steps  # logged after the step-6 checkpoint, before the crash
    toy_plugin.train_toy(plugins, tmp_path, cache, "train.max_steps=12", "objective.nan_at_call=null", resume_dir=run)
    records = [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines()]
    train_steps = [r["global_step"] for r in records if "train_loss" in r]
    assert train_steps == sorted(set(train_steps)) == [2, 4, 6, 8, 10, 12]


def test_bad_input_fails_before_the_run_directory_exists(plugins, cache, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        toy_plugin.train_toy(plugins, tmp_path / "runs", cache, f"data.path={tmp_path / 'nope.zarr'}")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(DatasetError, match="empty.zarr"):
        toy_plugin.train_toy(plugins, tmp_path / "runs", cache, f"data.path={tmp_path / 'empty.zarr'}")
    with pytest.raises(UserInputError, match="train.min_lr"):
        toy_plugin.train_toy(plugins, tmp_path / "runs", cache, "train.min_lr=1.0")
    with pytest.raises(UserInputError, match="encoder.crop_shape"):
        toy_plugin.train_toy(plugins, tmp_path / "runs", cache, "env.image=true")
    image = ("env.image=true", "encoder.crop_shape=[12, 12]")
    with pytest.raises(UserInputError, match="encoder.pretrained"):
        toy_plugin.train_toy(plugins, tmp_path / "runs", cache, *image, f"encoder.pretrained={tmp_path / 'w.pt'}")
    if not torch.cuda.is_available():
        with pytest.raises(UserInputError, match="CUDA is not available"):
            toy_plugin.train_toy(plugins, tmp_path / "runs", cache, "train.device=cuda")
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_a_checkpoint_that_does_not_fit(plugins, cache, tmp_path: Path, run: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoints").mkdir()
    (copy / "config.yaml").write_text((run / "config.yaml").read_text())
    (copy / "checkpoints" / LATEST).write_bytes((run / "checkpoints" / LATEST).read_bytes())
    with pytest.raises(UserInputError, match="does not fit the policy"):
        toy_plugin.train_toy(plugins, tmp_path, cache, "train.max_steps=20", "head.hidden=16", resume_dir=copy)
    with pytest.raises(UserInputError, match="horizon"):
        toy_plugin.train_toy(plugins, tmp_path, cache, "train.max_steps=20", "policy.horizon=12", resume_dir=copy)
    (copy / "checkpoints" / LATEST).write_text("not a checkpoint")
    with pytest.raises(UserInputError, match="not a polx checkpoint"):
        toy_plugin.train_toy(plugins, tmp_path, cache, "train.max_steps=20", resume_dir=copy)


def test_cli_train_and_eval(plugins, cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user-facing commands, with the toy plugin standing in for installed ones."""
    monkeypatch.setattr(cli, "_plugins", lambda **_: plugins)
    runner = CliRunner()
    args = ["train", "--head", "toy_mlp", "--env", "toy_reach", "--out", str(tmp_path / "runs"), "--logger", "none"]
    result = runner.invoke(cli.main, [*args, *toy_plugin.toy_overrides(cache, "train.max_steps=4", "eval.rollout_every=0", "train.num_workers=1")])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").glob("*/*")
    assert not (run / "logs.json.txt").exists()  # --logger none turns the JSON log off too

    out = tmp_path / "eval"
    result = runner.invoke(cli.main, ["eval", "--checkpoint", str(run / "checkpoints" / LATEST), "--episodes", "2", "--seed", "7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test_mean_score:" in result.output
    # one line per finished episode (CliRunner's stderr is not a terminal): two test seeds, then the toy's train seed
    assert [line.split(", score")[0] for line in result.output.splitlines() if line.startswith("polx: rollout episode")] == [
        "polx: rollout episode 1/3: test seed 7", "polx: rollout episode 2/3: test seed 8", "polx: rollout episode 3/3: train seed 0"]
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_test"] == 2 and report["test_start_seed"] == 7 and report["global_step"] == 4
    assert {"test/sim_max_reward_7", "test/sim_max_reward_8"} <= set(report["metrics"])
    assert sorted(p.name for p in out.glob("*.png")) == ["episode_0.png", "episode_1.png"]

    result = runner.invoke(cli.main, ["eval", "--checkpoint", str(tmp_path / "missing.ckpt")])
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "junk.ckpt").write_bytes(b"\x00" * 100)
    result = runner.invoke(cli.main, ["eval", "--checkpoint", str(tmp_path / "junk.ckpt")])
    assert result.exit_code == 2 and "not a polx checkpoint" in result.output

    result = runner.invoke(cli.main, ["train", "--resume", str(run), "train.max_steps=6", "objective.nan_at_call=1"])
    assert result.exit_code == 1 and "non-finite loss" in result.output and "step 5" in result.output


def test_max_minutes_stops_early_with_the_final_checkpoint_and_rollout(plugins, cache, tmp_path: Path) -> None:
    """A time budget ends the run at a log boundary, as max_steps would: final checkpoint, rollout, summary saying why."""
    # a budget of 0.6 microseconds: three real training steps always spend more, so step 3 is the first boundary past it
    run = toy_plugin.train_toy(plugins, tmp_path, cache, "train.max_steps=100000", "train.max_minutes=0.00000001", "train.log_every=3")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 3
    assert "train.max_minutes=1e-08 reached at step 3 of 100000" == summary["stopped"]
    assert load_checkpoint(run / "checkpoints" / LATEST)["global_step"] == 3
    assert "test_mean_score" in summary["metrics"]  # the at-end rollout ran

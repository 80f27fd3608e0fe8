"""Bad input through the ``polx`` command line, with the real plugins: each is refused with a
message naming the problem, exit code 2, and nothing on disk written or overwritten.

Every case runs inside one prepared tree (a dataset, two finished runs, damaged copies of
both, bad checkpoint files), snapshotted before and after (paths, sizes, mtimes, SHA-256): a
command that created, removed or touched any file there fails its case. The working directory
and the dataset cache are inside the tree too, so default output paths are watched as well.

Last, the logger drill: loggers that raise on every call never stop a run, and
``logs.json.txt`` stays whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from attrs import define
from click.testing import CliRunner

from polx import cli, hookimpl
from polx.plugins import load_plugins
from polx.base.checkpoint import LATEST

TINY_IMF = ["head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1"]
TINY_DDPM = ["head.n_emb=32", "head.n_layer=1", "head.n_head=2", "objective.num_train_timesteps=10", "objective.num_inference_steps=2"]
TINY_RUN = ["env.obs_type=keypoints", "train.max_steps=2", "train.batch_size=4", "train.progress=false", "train.val_every=0",
            "data.val_ratio=0.0", "eval.n_test=1", "eval.n_train=0", "eval.max_steps=4", "eval.n_vis=1"]


def installed_plugins():
    return load_plugins(entry_points=list(metadata.entry_points(group="polx")))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The watched tree: ``demos.zarr`` (PushT keypoints), finished runs ``imf`` and ``ddpm``, and damaged copies."""
    names = {kind: installed_plugins().registry.names(kind) for kind in ("head", "env")}
    if not {"imf_attnres", "ddpm_transformer"} <= set(names["head"]) or "pusht" not in names["env"]:
        pytest.skip("needs the project's plugins: heads imf_attnres and ddpm_transformer, env pusht")
    from polx.runs import build_env_adapter

    root = tmp_path_factory.mktemp("world")
    build_env_adapter(installed_plugins(), "pusht", ["env.demo_max_steps=30"]).generate_demos(
        root / "demos.zarr", 2, seed=0, keep_all=True, progress=False
    )
    runner = CliRunner()
    for name, head, tiny in (("imf", "imf_attnres", TINY_IMF), ("ddpm", "ddpm_transformer", TINY_DDPM)):
        args = ["train", "--head", head, "--env", "pusht", "--dataset", str(root / "demos.zarr"), "--run-dir", str(root / name)]
        result = runner.invoke(cli.main, [*args, *TINY_RUN, *tiny])
        assert result.exit_code == 0, result.output

    # datasets: no episode_ends; arrays shorter than episode_ends[-1]; lacking PushT's keypoints; a file
    shutil.copytree(root / "demos.zarr", root / "no_ends.zarr")
    shutil.rmtree(root / "no_ends.zarr" / "meta" / "episode_ends")
    shutil.copytree(root / "demos.zarr", root / "long_ends.zarr")
    group = zarr.open_group(str(root / "long_ends.zarr"), mode="r+")
    ends = group["meta/episode_ends"][:]
    group["meta/episode_ends"][-1] = ends[-1] + 10
    shutil.copytree(root / "demos.zarr", root / "no_keypoints.zarr")
    shutil.rmtree(root / "no_keypoints.zarr" / "data" / "keypoint")
    (root / "file.zarr").write_text("not a zarr store\n")
    damage_datasets(root)

    # checkpoints that are not polx checkpoints
    real = (root / "imf" / "checkpoints" / LATEST).read_bytes()
    bad = root / "bad_ckpts"
    bad.mkdir()
    (bad / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    (bad / "text.ckpt").write_text("model: resnet\nweights: none\n")
    (bad / "truncated.ckpt").write_bytes(real[: len(real) // 2])
    torch.save({"weights": torch.zeros(3)}, bad / "plain_torch.ckpt")
    torch.save({"x": RunsCode(str(root / "code_ran"))}, bad / "runs_code.ckpt")
    state = torch.load(root / "imf" / "checkpoints" / LATEST, weights_only=True)
    state["config"] = torch.load(root / "ddpm" / "checkpoints" / LATEST, weights_only=True)["config"]
    torch.save(state, bad / "config_of_other_head.ckpt")  # imf weights under a ddpm config
    state = torch.load(root / "imf" / "checkpoints" / LATEST, weights_only=True)
    for weights in (state["model"], state["ema"]["model"]):
        next(v for v in weights.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    torch.save(state, bad / "nan_weights.ckpt")
    state = torch.load(root / "imf" / "checkpoints" / LATEST, weights_only=True)
    del state["global_step"]
    torch.save(state, bad / "malformed.ckpt")  # a polx checkpoint that lost a field

    # run directories to --resume: a ddpm checkpoint in an imf run, and bad latest.ckpt files
    def run_copy(name: str, checkpoint: bytes) -> None:
        shutil.copytree(root / "imf", root / name)
        (root / name / "checkpoints" / LATEST).write_bytes(checkpoint)

    run_copy("resume_other_head", (root / "ddpm" / "checkpoints" / LATEST).read_bytes())
    for kind in ("random", "text", "truncated"):
        run_copy(f"resume_{kind}", (bad / f"{kind}.ckpt").read_bytes())
    (root / "not_a_run").mkdir()
    (root / "bad.yaml").write_text("train:\n  max_stpes: 10\n")
    (root / "cache").mkdir()
    return root


def damage_datasets(root: Path) -> None:
    """Copies of ``demos.zarr``, each damaged one way a real dataset gets damaged or mis-made."""
    def copy(name: str) -> zarr.Group:
        shutil.copytree(root / "demos.zarr", root / name)
        return zarr.open_group(str(root / name), mode="r+")

    copy("nan_action.zarr")["data/action"][5] = [np.nan, 1.0]
    copy("inf_keypoint.zarr")["data/keypoint"][9, 0] = [np.inf, 0.0]
    copy("missing_chunk.zarr")
    (root / "missing_chunk.zarr" / "data" / "action" / "0.0").unlink()
    copy("bad_zarray.zarr")
    (root / "bad_zarray.zarr" / "data" / "action" / ".zarray").write_text('{"zarr_format": 2, "shape": [')
    for name, key, reshape in (("keypoints_8.zarr", "keypoint", lambda a: a[:, :8]), ("action_3d.zarr", "action", lambda a: np.concatenate([a, a[:, :1]], 1))):
        group = copy(name)
        values = reshape(group[f"data/{key}"][:])
        del group["data"][key]
        group["data"].create_array(key, shape=values.shape, dtype=values.dtype, chunks=values.shape, config={"write_empty_chunks": True})[:] = values


class RunsCode:
    """Unpickling this would create a directory: a checkpoint that tries to run code."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def snapshot(root: Path) -> dict[str, tuple]:
    tree = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_dir():
            tree[rel] = ("dir", st.st_mtime_ns)
        else:
            tree[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return tree


def changes(before: dict, after: dict) -> list[str]:
    return [f"{k}: {'created' if k not in before else 'removed' if k not in after else 'modified'}"
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]


# (id, argv with {root} for the tree, exit code, fragments the message must contain)
D = "{root}/demos.zarr"
TRAIN = ["train", "--head", "imf_attnres", "--env", "pusht", "--out", "{root}/runs", "--dataset", D, *TINY_RUN, *TINY_IMF]
CASES = [
    # wrong value types and values
    ("int_given_text", [*TRAIN, "train.max_steps=abc"], 2, ["train.max_steps", "expected int, got 'abc'"]),
    ("int_given_float", [*TRAIN, "train.batch_size=2.5"], 2, ["train.batch_size", "expected int, got 2.5"]),
    ("float_given_text", [*TRAIN, "train.lr=fast"], 2, ["train.lr", "expected float"]),
    ("bool_given_text", [*TRAIN, "train.ema=maybe"], 2, ["train.ema", "bool"]),
    ("negative_count", [*TRAIN, "eval.n_test=-1"], 2, ["eval.n_test"]),
    ("list_for_int", [*TRAIN, "policy.horizon=[1, 2]"], 2, ["policy.horizon"]),
    ("head_option_type", [*TRAIN, "head.n_emb=wide"], 2, ["head.n_emb", "expected int"]),
    ("env_option_choice", [*TRAIN, "env.obs_type=pixels"], 2, ["obs_type", "image", "keypoints"]),
    ("override_without_value", [*TRAIN, "train.max_steps"], 2, ["bad override 'train.max_steps'", "KEY=VALUE"]),
    ("option_type", ["train", "--head", "imf_attnres", "--env", "pusht", "--config"], 2, ["--config"]),
    # unknown keys and names
    ("unknown_key", [*TRAIN, "train.max_step=5"], 2, ["train.max_step: unknown key (did you mean train.max_steps?)"]),
    ("unknown_section", [*TRAIN, "trian.lr=0.1"], 2, ["trian.lr: unknown key"]),
    ("unknown_head_key", [*TRAIN, "head.n_embd=64"], 2, ["head.n_embd: unknown key (did you mean head.n_emb?)"]),
    ("unknown_key_in_config_file", [*TRAIN, "--config", "{root}/bad.yaml"], 2, ["train.max_stpes: unknown key"]),
    ("unknown_head", ["train", "--head", "nope", "--env", "pusht"], 2, ["unknown head 'nope'", "imf_attnres"]),
    ("unknown_env", ["train", "--head", "imf_attnres", "--env", "nope"], 2, ["unknown env 'nope'", "pusht"]),
    ("unknown_logger", [*TRAIN, "--logger", "nope"], 2, ["nope", "json"]),
    ("unknown_option", [*TRAIN, "--epochs", "3"], 2, ["No such option '--epochs'"]),
    # missing and corrupt datasets
    ("missing_dataset", [*TRAIN, "--dataset", "{root}/nope.zarr"], 2, ["nope.zarr", "does not exist"]),
    ("hub_id_as_dataset", [*TRAIN, "--dataset", "lerobot/pusht"], 2,
     ["'lerobot/pusht' does not exist", "huggingface-cli download --repo-type dataset lerobot/pusht"]),
    ("hub_id_without_env", ["train", "--head", "imf_attnres", "--out", "{root}/runs", "--dataset", "lerobot/pusht"], 2,
     ["'lerobot/pusht' does not exist", "polx never downloads"]),
    ("dataset_without_episode_ends", [*TRAIN, "--dataset", "{root}/no_ends.zarr"], 2, ["no_ends.zarr", "no meta/episode_ends"]),
    ("dataset_arrays_too_short", [*TRAIN, "--dataset", "{root}/long_ends.zarr"], 2,
     ["long_ends.zarr", "steps but meta/episode_ends[-1] is"]),
    ("dataset_lacking_keys", [*TRAIN, "--dataset", "{root}/no_keypoints.zarr"], 2, ["lacks data/keypoint"]),
    ("dataset_is_a_file", [*TRAIN, "--dataset", "{root}/file.zarr"], 2, ["file.zarr", "is a file, not a zarr store"]),
    ("info_without_episode_ends", ["data", "info", "{root}/no_ends.zarr"], 2, ["no meta/episode_ends"]),
    ("info_arrays_too_short", ["data", "info", "{root}/long_ends.zarr"], 2, ["meta/episode_ends[-1] is"]),
    ("info_of_a_file", ["data", "info", "{root}/file.zarr"], 2, ["is a file"]),
    # damaged or mis-made data: found when the dataset is opened, before the run directory exists
    ("dataset_nan_action", [*TRAIN, "--dataset", "{root}/nan_action.zarr"], 2,
     ["nan_action.zarr", "action has non-finite values (NaN/inf", "first at step 5 (episode 0)"]),
    ("dataset_inf_keypoint", [*TRAIN, "--dataset", "{root}/inf_keypoint.zarr"], 2, ["keypoints has non-finite values", "step 9"]),
    ("dataset_missing_chunk", [*TRAIN, "--dataset", "{root}/missing_chunk.zarr"], 2,
     ["missing_chunk.zarr", "data/action is missing 1 of its 1 chunk files", "zeros"]),
    ("dataset_corrupt_zarray", [*TRAIN, "--dataset", "{root}/bad_zarray.zarr"], 2, ["bad_zarray.zarr", "zarr metadata could not be read"]),
    ("dataset_keypoints_8", [*TRAIN, "--dataset", "{root}/keypoints_8.zarr"], 2,
     ["keypoints_8.zarr", "keypoints has per-step shape (18,)", "the env expects (20,)"]),
    ("dataset_3d_action", [*TRAIN, "--dataset", "{root}/action_3d.zarr"], 2, ["action has per-step shape (3,)", "the env expects (2,)"]),
    ("info_missing_chunk", ["data", "info", "{root}/missing_chunk.zarr"], 2, ["missing 1 of its 1 chunk files"]),
    ("info_corrupt_zarray", ["data", "info", "{root}/bad_zarray.zarr"], 2, ["zarr metadata could not be read"]),
    # seeds the simulators refuse, output paths polx cannot write
    ("train_seed_out_of_range", [*TRAIN, "eval.test_start_seed=4294967295", "eval.n_test=2"], 2,
     ["eval.n_test: 2 episodes from eval.test_start_seed=4294967295 would use seeds up to 4294967296, past 4294967295"]),
    ("train_negative_seed", [*TRAIN, "train.seed=-3"], 2, ["train.seed: must lie in 0.."]),
    ("eval_negative_seed", ["eval", "--checkpoint", "{root}/imf/checkpoints/latest.ckpt", "--seed=-1"], 2, ["eval.test_start_seed"]),
    ("out_is_a_file", [*TRAIN, "--out", "{root}/bad.yaml"], 2, ["--out", "bad.yaml", "is a file, not a directory"]),
    ("run_dir_under_a_file", [*TRAIN, "--run-dir", "{root}/bad.yaml/run"], 2, ["--run-dir", "which is a file"]),
    ("eval_out_is_a_file", ["eval", "--checkpoint", "{root}/imf/checkpoints/latest.ckpt", "--out", "{root}/bad.yaml"], 2,
     ["--out", "is a file, not a directory"]),
    # checkpoints: from another head, or not checkpoints at all
    ("resume_other_heads_checkpoint", ["train", "--resume", "{root}/resume_other_head", "train.max_steps=4"], 2,
     ["different policy", "head: checkpoint has 'ddpm_transformer', this run has 'imf_attnres'"]),
    ("eval_weights_of_other_head", ["eval", "--checkpoint", "{root}/bad_ckpts/config_of_other_head.ckpt"], 2,
     ["different policy", "head: checkpoint has 'imf_attnres', this run has 'ddpm_transformer'"]),
    ("eval_override_changes_shape", ["eval", "--checkpoint", "{root}/imf/checkpoints/latest.ckpt", "head.n_emb=64"], 2,
     ["does not fit the policy"]),
    ("eval_unknown_key", ["eval", "--checkpoint", "{root}/imf/checkpoints/latest.ckpt", "eval.n_tset=3"], 2,
     ["eval.n_tset: unknown key (did you mean eval.n_test?)"]),
    ("eval_random_bytes", ["eval", "--checkpoint", "{root}/bad_ckpts/random.ckpt"], 2, ["random.ckpt", "is not a polx checkpoint"]),
    ("eval_text_file", ["eval", "--checkpoint", "{root}/bad_ckpts/text.ckpt"], 2, ["text.ckpt", "is not a polx checkpoint"]),
    ("eval_truncated", ["eval", "--checkpoint", "{root}/bad_ckpts/truncated.ckpt"], 2, ["truncated.ckpt", "is not a polx checkpoint"]),
    ("eval_plain_torch_file", ["eval", "--checkpoint", "{root}/bad_ckpts/plain_torch.ckpt"], 2, ["is not a polx checkpoint"]),
    ("eval_checkpoint_that_runs_code", ["eval", "--checkpoint", "{root}/bad_ckpts/runs_code.ckpt"], 2, ["never run code"]),
    ("eval_nan_weights", ["eval", "--checkpoint", "{root}/bad_ckpts/nan_weights.ckpt"], 2, ["nan_weights.ckpt", "non-finite weights"]),
    ("eval_malformed_checkpoint", ["eval", "--checkpoint", "{root}/bad_ckpts/malformed.ckpt"], 2,
     ["malformed polx checkpoint", "global_step is missing"]),
    ("eval_missing_checkpoint", ["eval", "--checkpoint", "{root}/nope.ckpt"], 2, ["nope.ckpt", "does not exist"]),
    ("eval_directory", ["eval", "--checkpoint", "{root}/imf/checkpoints"], 2, ["checkpoints'"]),
    ("eval_episodes_zero", ["eval", "--checkpoint", "{root}/imf/checkpoints/latest.ckpt", "--episodes", "0"], 2, ["--episodes"]),
    ("resume_random_bytes", ["train", "--resume", "{root}/resume_random", "train.max_steps=4"], 2, ["is not a polx checkpoint"]),
    ("resume_text_file", ["train", "--resume", "{root}/resume_text", "train.max_steps=4"], 2, ["is not a polx checkpoint"]),
    ("resume_truncated", ["train", "--resume", "{root}/resume_truncated", "train.max_steps=4"], 2, ["is not a polx checkpoint"]),
    ("resume_finished_run", ["train", "--resume", "{root}/imf"], 2, ["already reached step 2", "train.max_steps"]),
    ("resume_not_a_run", ["train", "--resume", "{root}/not_a_run"], 2, ["not_a_run", "not a polx run directory"]),
    ("resume_with_other_head", ["train", "--resume", "{root}/imf", "--head", "ddpm_transformer", "train.max_steps=4"], 2,
     ["is a run of head 'imf_attnres' on env 'pusht'", "drop --head/--env"]),
    ("resume_shape_change", ["train", "--resume", "{root}/imf", "train.max_steps=4", "head.n_emb=64"], 2, ["does not fit the policy"]),
    ("run_dir_not_empty", [*TRAIN, "--run-dir", "{root}/imf"], 2, ["exists and is not empty", "--resume"]),
    ("resume_with_logger", ["train", "--resume", "{root}/imf", "--logger", "wandb", "train.max_steps=4"], 2,
     ["--logger cannot be combined with --resume"]),
    ("resume_with_objective", ["train", "--resume", "{root}/imf", "--objective", "imf", "train.max_steps=4"], 2,
     ["--objective cannot be combined with --resume"]),
    ("resume_with_run_dir", ["train", "--resume", "{root}/imf", "--run-dir", "{root}/elsewhere", "train.max_steps=4"], 2,
     ["--run-dir cannot be combined with --resume"]),
    # data generate onto an existing path
    ("generate_over_dataset", ["data", "generate", "--env", "pusht", "--episodes", "1", "--out", D], 2,
     ["demos.zarr", "already exists"]),
    ("generate_over_file", ["data", "generate", "--env", "pusht", "--episodes", "1", "--out", "{root}/file.zarr"], 2,
     ["file.zarr", "already exists"]),
    ("generate_zero_episodes", ["data", "generate", "--env", "pusht", "--episodes", "0", "--out", "{root}/new.zarr"], 2,
     ["--episodes"]),
    ("generate_bad_env_option", ["data", "generate", "--env", "pusht", "--episodes", "1", "--out", "{root}/new.zarr",
                                 "env.render_size=big"], 2, ["env.render_size", "expected int"]),
    ("generate_non_env_option", ["data", "generate", "--env", "pusht", "--episodes", "1", "--out", "{root}/new.zarr",
                                 "train.lr=0.1"], 2, ["only env.KEY=VALUE"]),
]


@pytest.mark.parametrize("argv, code, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_writes_nothing(world: Path, argv, code, fragments, monkeypatch) -> None:
    monkeypatch.chdir(world)  # default output paths (runs/, <run>/eval/) fall inside the watched tree
    monkeypatch.setenv("POLX_CACHE_DIR", str(world / "cache"))
    before = snapshot(world)
    result = CliRunner().invoke(cli.main, [a.replace("{root}", str(world)) for a in argv])
    assert result.exit_code == code, result.output
    message = " ".join(result.output.split())  # click wraps long lines
    for fragment in fragments:
        assert fragment in message, result.output
    assert "Traceback" not in result.output
    assert changes(before, snapshot(world)) == []
    assert not (world / "code_ran").exists()


# ---------------------------------------------------------------------------------------------
# the logger drill: every call raises, the run completes, logs.json.txt is intact


class Failing:
    """A logger whose every method raises, as a tracker with no network does."""

    def __init__(self, config, run):
        pass

    def log(self, step, metrics, images):
        raise ConnectionError("tracker unreachable")

    def close(self):
        raise ConnectionError("tracker unreachable")


def failing_at_start(config, run):
    raise ConnectionError("tracker unreachable")


@define(frozen=True, kw_only=True)
class FailingConfig:
    enabled: bool = True


class FailingPlugin:
    """Two loggers (one raising on every call, one whose factory raises) and a raising ``log_metrics`` hook."""

    @hookimpl
    def register_components(self, register):
        register("logger", "failing", FailingConfig, Failing, help="raises on every call")
        register("logger", "failing_at_start", FailingConfig, failing_at_start, help="cannot start")

    @hookimpl
    def log_metrics(self, run, step, metrics, images):
        raise RuntimeError("third-party hook broken")


def test_loggers_that_always_raise_never_stop_training(world: Path, tmp_path: Path) -> None:
    from polx.runs import prepare_training
    from polx.train.trainer import run_training

    plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")), extra=[("failing", FailingPlugin())])
    overrides = [*TINY_RUN, *TINY_IMF, "train.max_steps=6", "train.log_every=1", "train.val_every=3", "data.val_ratio=0.5",
                 "train.checkpoint_every=2", "eval.rollout_every=3"]
    plan = prepare_training(plugins, head="imf_attnres", env="pusht", dataset=world / "demos.zarr", loggers=["failing", "failing_at_start"],
                            run_dir=tmp_path / "run", overrides=overrides, argv=["test"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_training(plan)
    said = [str(w.message) for w in caught]
    for expected in ("logger 'failing_at_start' could not start", "logger 'failing' failed and is skipped",
                     "log_metrics of plugin 'failing' failed and is skipped", "logger 'failing' failed to close"):
        assert sum(expected in s for s in said) == 1, said  # warned once, not at every call

    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    records = [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines()]  # every line parses
    steps = [r["global_step"] for r in records]
    assert steps == sorted(steps)
    assert [r["global_step"] for r in records if "train_loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["global_step"] for r in records if "val_loss" in r] == [3, 6]
    assert [r["global_step"] for r in records if "test_mean_score" in r] == [3, 6]

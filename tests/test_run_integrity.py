"""Run integrity on the toy plugin: the final checkpoint survives a failing rollout or drawing, the
JSON log never switches itself off, bad data stops a run before its directory exists, one run
directory has one writer, resume paths and flags, and non-TTY progress lines.

The faults are real: an env whose simulator raises mid-episode and a drawing hook that raises
(registered as a plugin, as a stranger's would be), a file handle on ``/dev/full`` (the kernel's
"no space left on device"), damaged zarr stores on disk, a lock held by another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import attrs
import numpy as np
import pytest
import yaml
import zarr

import toy_plugin  # noqa: E402

from polx import hookimpl  # noqa: E402
from polx.components import Run  # noqa: E402
from polx.errors import DatasetError, PolxError, UserInputError  # noqa: E402
from polx.plugins import load_plugins  # noqa: E402
from polx.runlock import RUN_LOCK, LockHeldError  # noqa: E402
from polx.runs import prepare_training  # noqa: E402
from polx.base.checkpoint import LATEST, load_checkpoint  # noqa: E402
from polx.train.trainer import run_training  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# a plugin whose simulator fails mid-rollout and whose trajectory drawing fails


@attrs.define(frozen=True, kw_only=True)
class FaultyReachConfig(toy_plugin.ToyReachConfig):
    fail_step: bool = False  # env.step raises (a simulator that lost its state)
    fail_draw: bool = False  # render_trajectory raises (a renderer without a display)


class FaultyReachEnv(toy_plugin.ToyReachEnv):
    def step(self, action):
        if self.config.fail_step:
            raise RuntimeError("simulator diverged")
        return super().step(action)


class FaultyReachAdapter(toy_plugin.ToyReachAdapter):
    name = "faulty_reach"

    def make_env(self):
        return FaultyReachEnv(self.config)

    def default_dataset(self, progress: bool = True):  # the demos come from the working simulator
        c = self.config
        return toy_plugin.ToyReachAdapter(toy_plugin.ToyReachConfig(n_demos=c.n_demos, cache_dir=c.cache_dir)).default_dataset()


class FaultyPlugin:
    @hookimpl
    def register_components(self, register):
        register("env", "faulty_reach", FaultyReachConfig, FaultyReachAdapter, help="toy_reach that fails on demand")

    @hookimpl(tryfirst=True)
    def render_trajectory(self, env, episode, path):
        env = getattr(env, "unwrapped", env)
        if isinstance(env, FaultyReachEnv) and env.config.fail_draw:
            Path(path).write_bytes(b"half a png")  # what a renderer dying mid-write leaves
            raise OSError("no display to draw on")
        return None


@pytest.fixture(scope="module")
def plugins():
    eps = [ep for ep in __import__("importlib").metadata.entry_points(group="polx") if ep.name == "loggers"]
    return load_plugins(entry_points=eps, extra=[("toy", toy_plugin), ("faulty", FaultyPlugin())])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def train(plugins, cache, run_dir, *extra, env="toy_reach", loggers=()):
    overrides = toy_plugin.toy_overrides(cache, "train.max_steps=4", "eval.rollout_every=0", "train.val_every=0",
                                         "train.checkpoint_every=0", "eval.n_test=2", "eval.n_train=0", *extra)
    plan = prepare_training(plugins, head="toy_mlp", env=env, loggers=loggers, run_dir=run_dir, overrides=overrides, argv=["test"])
    return run_training(plan)


@pytest.mark.parametrize("fault, said", [("env.fail_step=true", "rollout at step 4 failed"), ("env.fail_draw=true", "drawing the trajectory")])
def test_a_failing_final_rollout_or_drawing_keeps_the_final_checkpoint(plugins, cache, tmp_path, fault, said):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(plugins, cache, tmp_path / "run", fault, env="faulty_reach")
    messages = [str(w.message) for w in caught]
    assert sum(said in m for m in messages) >= 1, messages
    state = load_checkpoint(run / "checkpoints" / LATEST)
    assert state["global_step"] == 4
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert not list(run.rglob("*.partial.png")) and not list(run.rglob("episode_*.png"))
    if "fail_step" in fault:  # no score, and the warning is recorded with the run
        assert "test_mean_score" not in summary["metrics"] and any("simulator diverged" in w for w in summary["warnings"])
    else:  # the episodes still scored; only the pictures are missing
        assert "test_mean_score" in summary["metrics"]


def test_an_existing_empty_run_dir_is_used_as_is_and_locked_while_running(plugins, cache, tmp_path):
    (tmp_path / "empty").mkdir()
    run = train(plugins, cache, tmp_path / "empty")
    assert run == tmp_path / "empty" and not (tmp_path / "empty_2").exists()
    assert not (run / RUN_LOCK).exists()  # released at the end


def test_a_run_directory_held_by_another_process_is_refused_untouched(plugins, cache, tmp_path):
    run = train(plugins, cache, tmp_path / "run", "train.checkpoint_every=2")
    (run / "summary.json").unlink()  # resumable
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from polx.runlock import RunDirLock; RunDirLock().acquire(sys.argv[1]).write_pid(); "
         "print('held', flush=True); time.sleep(600)", str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        plan = prepare_training(plugins, head=None, env=None, resume_dir=run, overrides=["train.max_steps=6"], argv=["test"])
        with pytest.raises(LockHeldError, match=f"in use by another polx process \\(PID {holder.pid}"):
            run_training(plan)
    finally:
        holder.kill()
        holder.wait()
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != RUN_LOCK}
    assert after == {p: t for p, t in before.items() if p.name != RUN_LOCK}


def test_the_json_log_fails_loudly_when_a_line_cannot_be_written(plugins, tmp_path):
    """A full disk under the JSON log stops the run; a tracker's failure would only warn."""
    from polx import logdispatch

    run = Run(dir=tmp_path, name="r", config={})
    run.loggers["json"] = plugins.registry.get("logger", "json").build(plugins.registry.get("logger", "json").config_cls(), run)
    logdispatch.log(plugins, run, 1, {"train_loss": 1.0})
    run.loggers["json"]._file = open("/dev/full", "a")  # the disk fills up under the open log
    with pytest.raises(logdispatch.RequiredLogError, match="could not record step 2 .*No space left on device"):
        logdispatch.log(plugins, run, 2, {"train_loss": 0.5})


def test_a_damaged_json_log_stops_a_resume_instead_of_switching_off(plugins, cache, tmp_path):
    run = train(plugins, cache, tmp_path / "run", "train.checkpoint_every=2", loggers=["json"])
    (run / "summary.json").unlink()
    lines = (run / "logs.json.txt").read_text().splitlines(keepends=True)
    (run / "logs.json.txt").write_text("".join([lines[0], "{damaged\n", *lines[1:]]))
    plan = prepare_training(plugins, head=None, env=None, resume_dir=run, overrides=["train.max_steps=6"], argv=["test"])
    with pytest.raises(PolxError, match="the json log could not be opened"):
        run_training(plan)
    assert not (run / "summary.json").exists()


# ---------------------------------------------------------------------------------------------
# data checked when opened: nothing is written


def damaged_copies(source: Path, root: Path) -> dict[str, Path]:
    import shutil

    out = {}
    for kind in ("nan_action", "inf_obs", "huge_action", "missing_chunk", "bad_zarray", "wide_action"):
        out[kind] = root / f"{kind}.zarr"
        shutil.copytree(source, out[kind])
    group = zarr.open_group(str(out["nan_action"]), mode="r+")
    group["data/action"][7] = [np.nan, 0.0]
    group = zarr.open_group(str(out["inf_obs"]), mode="r+")
    group["data/pos"][3] = [np.inf, 0.0]
    group = zarr.open_group(str(out["huge_action"]), mode="r+")
    group["data/action"][5] = [0.0, 1e30]  # finite, but a corrupt value: it would train to val_action_mse inf
    chunk = next(p for p in (out["missing_chunk"] / "data" / "action").iterdir() if not p.name.startswith("."))
    chunk.unlink()
    (out["bad_zarray"] / "data" / "action" / ".zarray").write_text("{not json")
    group = zarr.open_group(str(out["wide_action"]), mode="r+")
    action = group["data/action"][:]
    del group["data"]["action"]
    sub = group["data"].create_array("action", shape=(len(action), 3), dtype="float32", chunks=(4096, 3), config={"write_empty_chunks": True})
    sub[:] = np.concatenate([action, action[:, :1]], axis=1)
    return out


@pytest.mark.parametrize("kind, fragments", [
    ("nan_action", ["action has non-finite values", "first at step 7", "episode 0"]),
    ("inf_obs", ["pos has non-finite values", "first at step 3"]),
    ("huge_action", ["action has non-finite values (NaN/inf, or |x| >= 1e+30", "first at step 5"]),
    ("missing_chunk", ["data/action is missing 1 of its", "chunk files", "zeros"]),
    ("bad_zarray", ["zarr metadata could not be read", ".zarray"]),
    ("wide_action", ["action has per-step shape (3,)", "the env expects (2,)"]),
])
def test_bad_data_is_refused_before_the_run_directory_exists(plugins, cache, tmp_path, kind, fragments):
    source = toy_plugin.ToyReachAdapter(toy_plugin.ToyReachConfig(cache_dir=str(cache))).default_dataset()
    data = damaged_copies(source, tmp_path)[kind]
    with pytest.raises(DatasetError) as info:
        train(plugins, cache, tmp_path / "run", f"data.path={data}")
    message = " ".join(str(info.value).split())
    for fragment in [str(data), *fragments]:
        assert fragment in message, message
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# resume: absolute paths, refused flags


def test_resume_records_absolute_data_paths_and_refuses_flags_it_would_ignore(plugins, cache, tmp_path, monkeypatch):
    source = toy_plugin.ToyReachAdapter(toy_plugin.ToyReachConfig(cache_dir=str(cache))).default_dataset()
    import shutil

    shutil.copytree(source, tmp_path / "demos.zarr")
    monkeypatch.chdir(tmp_path)
    run = train(plugins, cache, tmp_path / "run", "data.path=demos.zarr", "train.checkpoint_every=2")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["path"] == str(tmp_path / "demos.zarr")
    (run / "summary.json").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    plan = prepare_training(plugins, head=None, env=None, resume_dir=run, overrides=["train.max_steps=6"])
    assert plan.config.data.path == str(tmp_path / "demos.zarr")
    for flags, named in (({"objective": "toy_flow"}, "--objective"), ({"loggers": ["json"]}, "--logger"),
                         ({"run_dir": tmp_path / "x"}, "--run-dir"), ({"out": tmp_path / "o"}, "--out")):
        with pytest.raises(UserInputError, match=f"{named} cannot be combined with --resume"):
            prepare_training(plugins, head=None, env=None, resume_dir=run, **flags)


def test_bad_output_directories_are_refused_with_a_message(plugins, cache, tmp_path):
    (tmp_path / "a_file").write_text("x")
    for kwargs, fragment in (({"out": tmp_path / "a_file"}, "is a file, not a directory"),
                             ({"run_dir": tmp_path / "a_file" / "run"}, "which is a file"),
                             ({"overrides": ["eval.test_start_seed=4294967295"]}, "eval.n_test: 50 episodes from eval.test_start_seed=4294967295"),
                             ({"overrides": ["train.seed=-1"]}, "train.seed: must lie in 0..")):
        with pytest.raises(UserInputError, match=fragment):
            prepare_training(plugins, head="toy_mlp", env="toy_reach", **{"out": tmp_path / "runs", **kwargs})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


# ---------------------------------------------------------------------------------------------
# without a TTY: one progress line per log_every steps


def test_progress_lines_without_a_tty(tmp_path):
    site = tmp_path / "site" / "polx_toy-0.0.1.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: polx-toy\nVersion: 0.0.1\n")
    (site / "entry_points.txt").write_text("[polx]\ntoy = toy_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO / "tests")]),
           "POLX_DISABLE_PLUGINS": "envs,imf_attnres,ddpm_transformer"}
    overrides = [o for o in toy_plugin.toy_overrides(tmp_path / "cache", "train.max_steps=6", "eval.rollout_every=0",
                                                       "train.val_every=0", "eval.n_test=1", "eval.n_train=0")
                 if o != "train.progress=false"]
    cmd = [sys.executable, "-m", "polx", "train", "--head", "toy_mlp", "--env", "toy_reach", "--run-dir", str(tmp_path / "run"),
           "--logger", "none", *overrides, "eval.at_end=false"]
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("polx: step ")]
    assert [line.split()[2] for line in lines] == ["2/6", "4/6", "6/6"], done.stderr  # train.log_every=2
    for line in lines:
        words = line.split()
        assert words[3] == "loss" and np.isfinite(float(words[4])) and words[5] == "lr" and float(words[6]) > 0
        assert words[8] == "steps/s" and words[9] == "ETA"
    assert "\r" not in done.stderr  # no progress bar redraws in a log file


def test_a_lone_string_for_a_list_valued_key_is_one_element(plugins):
    from polx.config import ConfigError, resolve_config

    def tags(value: str):
        return resolve_config(plugins, head="toy_mlp", env="toy_reach", overrides=[f"loggers.swanlab.tags={value}"]).loggers["swanlab"].tags

    assert tags("baseline") == ("baseline",)
    assert tags("[baseline, ablation]") == ("baseline", "ablation")
    with pytest.raises(ConfigError, match="loggers.swanlab"):
        tags("3")

"""``polx dagger`` with the real PushT env and expert, a tiny head and budgets of a few steps.

The data grow by exactly the rollouts' steps, labelled by the expert; a run killed at a round
boundary or mid-training and resumed ends with the same data as one never interrupted; bad
input exits 2 and writes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from polx import cli
from polx.data.replay_buffer import ReplayBuffer
from polx.plugins import load_plugins

TINY = [
    "head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1", "env.obs_type=keypoints",
    "train.max_steps=4", "train.batch_size=4", "train.progress=false", "train.val_every=0", "train.threads=1",
    "train.log_every=1", "train.checkpoint_every=2", "data.val_ratio=0.0", "eval.n_test=1", "eval.n_train=0",
    "eval.max_steps=8", "eval.n_vis=1", "dagger.steps_per_round=4",
    "dagger.beta=1.0", "dagger.beta_decay=0.0",  # round 1: the expert in control; round 2: the policy
]  # fmt: skip
EPISODES = 2


def _installed():
    return load_plugins(entry_points=list(metadata.entry_points(group="polx")))


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    if "pusht" not in _installed().registry.names("env"):
        pytest.skip("needs the envs plugin")
    from polx.runs import build_env_adapter

    out = tmp_path_factory.mktemp("dagger") / "demos.zarr"
    build_env_adapter(_installed(), "pusht", ["env.demo_max_steps=12"]).generate_demos(out, 2, seed=0, keep_all=True, progress=False)
    return out


def _argv(demos: Path, run_dir: Path) -> list[str]:
    return ["dagger", "--head", "imf_attnres", "--env", "pusht", "--dataset", str(demos), "--rounds", "2",
            "--episodes", str(EPISODES), "--run-dir", str(run_dir), *TINY]  # fmt: skip


@pytest.fixture(scope="module")
def finished(demos, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("dagger") / "run"
    result = CliRunner().invoke(cli.main, _argv(demos, run_dir))
    assert result.exit_code == 0, result.output
    (run_dir.parent / "output.txt").write_text(result.output)
    return run_dir


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about a minute on an idle machine; several times that on shared cores
def test_two_rounds_grow_the_data_by_the_rollouts_with_the_expert_labels(demos, finished):
    import json

    from polx_envs.pusht.env import PushTEnv
    from polx_envs.pusht.expert import PushTExpert

    start = ReplayBuffer.open(demos)
    table = json.loads((finished / "summary.json").read_text())["table"]
    assert [row["round"] for row in table] == [0, 1, 2]
    final = ReplayBuffer.open(finished / "data" / "round_002.zarr")
    added = table[1]["steps_added"] + table[2]["steps_added"]
    assert final.n_episodes == start.n_episodes + 2 * EPISODES and final.n_steps == start.n_steps + added
    assert [row["dataset_steps"] for row in table] == [start.n_steps, start.n_steps + table[1]["steps_added"], final.n_steps]
    data, ends = final.load(), final.episode_ends
    n0 = start.n_steps
    for key in ("state", "keypoint", "action", "n_contacts"):  # the starting data, unchanged, first
        assert np.array_equal(data[key][:n0], start.load([key])[key])
    episode_round = [int(data["dagger_round"][end - 1, 0]) for end in ends]
    assert episode_round == [0] * start.n_episodes + [1] * EPISODES + [2] * EPISODES
    assert not (finished / "data" / "round_001.zarr").exists()  # superseded by round 2's store

    starts = np.concatenate([[0], ends[:-1]])
    for k, seed in enumerate(range(200_000, 200_000 + 2 * EPISODES)):
        lo, hi = starts[start.n_episodes + k], ends[start.n_episodes + k]
        env = PushTEnv(obs_type="keypoints")
        env.reset(seed=seed)
        assert np.allclose(data["state"][lo], env.sim.state())  # each rollout starts from its seed
        assert np.array_equal(data["action"][lo], np.float32(PushTExpert().act(env)))  # labelled by the expert (stored float32)
        if k < EPISODES:  # round 1, beta 1: the expert drove, so its labels replay to the recorded states
            for t in range(lo, hi - 1):
                env.step(data["action"][t])
                assert np.allclose(data["state"][t + 1], env.sim.state(), atol=1e-3)
                assert data["n_contacts"][t + 1, 0] == env.n_contacts  # recorded as the demos record it
    assert table[1]["teacher_step_share"] == 1.0 and table[2]["teacher_step_share"] == 0.0
    assert (finished / "media" / "score_by_round.png").is_file()
    # each round's stage starts from a checkpoint saved with the round's own config (its data), so
    # continuing it is not reported as a resume on moved data
    assert "warning: resuming" not in (finished.parent / "output.txt").read_text()
    assert all(row["test_mean_score"] is not None for row in table)
    logged = [json.loads(line) for line in (finished / "logs.json.txt").read_text().splitlines()]
    assert [r["global_step"] for r in logged] == [0, 1, 2] and all("disagreement_rate" in r for r in logged[1:])


def _kill_when(argv: list[str], ready, timeout: float = 600) -> None:
    """Run ``polx`` in a subprocess and SIGKILL it as soon as ``ready()`` is true."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "polx", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"finished before the kill point: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


def _mid_training(stage: Path):
    def ready() -> bool:
        log = stage / "logs.json.txt"
        return log.is_file() and '"train_loss"' in log.read_text()

    return ready


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("where", ["round_boundary", "mid_training"])
def test_kill_and_resume_gives_the_same_data(demos, finished, tmp_path, where):
    run_dir = tmp_path / "run"
    if where == "round_boundary":
        ready = lambda: (run_dir / "data" / "round_001.zarr").exists()  # noqa: E731
    else:
        ready = _mid_training(run_dir / "stages" / "round_001")
    _kill_when(_argv(demos, run_dir), ready)
    assert not (run_dir / "summary.json").exists()
    result = CliRunner().invoke(cli.main, ["dagger", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    ours, reference = (ReplayBuffer.open(d / "data" / "round_002.zarr") for d in (run_dir, finished))
    assert np.array_equal(ours.episode_ends, reference.episode_ends)
    for key in reference.keys():
        assert np.array_equal(ours.load([key])[key], reference.load([key])[key]), key


# ---------------------------------------------------------------------------------------------
# bad input: exit 2, a message naming the problem, nothing written


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _refused(argv: list[str], root: Path, fragments: list[str], plugins=None, monkeypatch=None) -> None:
    if plugins is not None:
        monkeypatch.setattr(cli, "_plugins", lambda: plugins)
    before = _files(root)
    result = CliRunner().invoke(cli.main, argv)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    for fragment in fragments:
        assert fragment in message, result.output
    assert _files(root) == before


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--rounds", "0", "--episodes", "2"], ["--rounds", "0"]),
        (["--rounds", "2", "--episodes", "-1"], ["--episodes", "-1"]),
        (["--rounds", "2"], ["--rounds and --episodes are required"]),
        (["--rounds", "2", "--episodes", "2", "dagger.beta=2"], ["beta"]),
        (["--rounds", "2", "--episodes", "2", "dagger.betta=0.1"], ["dagger.betta"]),
        (["--rounds", "2", "--episodes", "2", "eval.at_end=false"], ["eval.at_end"]),
    ],
)
def test_bad_numbers_are_refused(demos, tmp_path, flags, fragments):
    argv = ["dagger", "--head", "imf_attnres", "--env", "pusht", "--dataset", str(demos), "--run-dir", str(tmp_path / "run"), *flags]
    _refused(argv, tmp_path, fragments)


def test_a_dataset_that_does_not_fit_the_env_is_refused(tmp_path, demos):
    bad = tmp_path / "bad.zarr"
    with ReplayBuffer.writer(bad) as rb:  # keypoints of 8 points, not PushT's 9
        rb.add_episode({"state": np.ones((5, 5), np.float32), "keypoint": np.ones((5, 8, 2), np.float32), "action": np.ones((5, 2), np.float32)})
    argv = ["dagger", "--head", "imf_attnres", "--env", "pusht", "--dataset", str(bad), "--rounds", "1", "--episodes", "1",
            "--run-dir", str(tmp_path / "run"), "env.obs_type=keypoints"]  # fmt: skip
    _refused(argv, tmp_path, ["bad.zarr", "keypoints", "(18,)", "(20,)"])


def test_an_env_without_an_expert_is_refused(tmp_path, monkeypatch):
    import toy_plugin

    plugins = load_plugins(entry_points=[], extra=[("toy", toy_plugin)])
    argv = ["dagger", "--head", "toy_mlp", "--env", "toy_reach", "--rounds", "1", "--episodes", "1", "--run-dir", str(tmp_path / "run")]
    _refused(argv, tmp_path, ["toy_reach", "offers no expert", "make_expert"], plugins=plugins, monkeypatch=monkeypatch)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_dagger_starts_from_an_hdf5_episode_directory(demos, tmp_path):
    """The starting data in another format (ACT HDF5 episodes, converted from the zarr demos):
    round 1's store holds them unchanged, then the rollouts; later rounds read zarr."""
    import json

    from polx.data.convert import convert_dataset
    from polx.data.formats import load_arrays, open_dataset

    act = tmp_path / "act"
    convert_dataset(demos, act, "hdf5", registry=_installed().registry, progress=False)
    run_dir = tmp_path / "run"
    argv = ["dagger", "--head", "imf_attnres", "--env", "pusht", "--dataset", str(act), "--rounds", "1",
            "--episodes", "1", "--run-dir", str(run_dir), *TINY]  # fmt: skip
    result = CliRunner().invoke(cli.main, argv)
    assert result.exit_code == 0, result.output
    start, final = open_dataset(act, "hdf5", registry=load_plugins().registry), ReplayBuffer.open(run_dir / "data" / "round_001.zarr")
    n0 = int(start.episode_ends[-1])
    assert final.n_episodes == len(start.episode_ends) + 1
    for key, value in load_arrays(start, ["state", "action"]).items():
        assert np.array_equal(final.load([key])[key][:n0], value)
    table = json.loads((run_dir / "summary.json").read_text())["table"]
    assert [row["dataset_steps"] for row in table] == [n0, final.n_steps]

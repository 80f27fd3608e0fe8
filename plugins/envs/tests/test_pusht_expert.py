"""The PushT expert, demo generation, the cached default dataset and the adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from polx.data.replay_buffer import ReplayBuffer, describe
from polx.errors import PolxError
from polx.plugins import load_plugins
from polx_envs.pusht.adapter import PushTAdapter
from polx_envs.pusht.config import PushTConfig
from polx_envs.pusht.env import PushTEnv
from polx_envs.pusht.expert import PushTExpert, pose_error, run_episode

DATASET = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"
QUICK_SEEDS = (100048, 100045)  # benchmark start states the expert solves in few steps


@pytest.mark.parametrize("seed", QUICK_SEEDS)
def test_expert_solves_benchmark_start_states(seed):
    result = run_episode(seed, max_steps=300)
    assert result["success"] and result["max_coverage"] > 0.95 and result["steps"] < 300


def test_pose_error_is_zero_at_the_goal_and_linear_in_the_turn():
    from polx_envs.pusht.geometry import GOAL_POSE, TEE_COG, rotation

    def turned(angle: float) -> np.ndarray:  # the goal turned about its centre of gravity
        a = GOAL_POSE[2] + angle
        cog = GOAL_POSE[:2] + rotation(GOAL_POSE[2]) @ TEE_COG
        return np.array([*(cog - rotation(a) @ TEE_COG), a])

    assert pose_error(GOAL_POSE) == pytest.approx(0.0, abs=1e-9)
    assert pose_error(turned(np.pi)) == pytest.approx(2 * pose_error(turned(np.pi / 2)))  # no plateau at a half turn
    assert pose_error(turned(-0.3)) == pytest.approx(pose_error(turned(0.3)))


def test_expert_targets_stay_in_the_workspace():
    env = PushTEnv(obs_type="state")
    env.reset(seed=100049)  # the block starts near the left wall
    expert = PushTExpert()
    for _ in range(40):
        action = expert.act(env.sim)
        assert action.shape == (2,) and (0 <= action).all() and (action <= 512).all()
        env.step(action)


# ---------------------------------------------------------------------------------------------
# demonstrations


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demos") / "pusht.zarr"
    summary = PushTAdapter(PushTConfig()).generate_demos(out, 2, seed=QUICK_SEEDS[0], workers=1, progress=False)
    return out, summary


def test_generated_demos_have_the_original_layout(demos):
    out, summary = demos
    assert summary["episodes"] == 2 and summary["seeds_tried"] >= 2 and 0 < summary["success_rate"] <= 1
    rb = ReplayBuffer.open(out)
    assert rb.n_episodes == 2 and rb.n_steps == summary["steps"]
    assert sorted(rb.keys()) == ["action", "img", "keypoint", "n_contacts", "state"]
    data = rb.load()
    n = rb.n_steps
    shapes = {k: v.shape for k, v in data.items()}
    assert shapes == {"img": (n, 96, 96, 3), "state": (n, 5), "keypoint": (n, 9, 2), "action": (n, 2), "n_contacts": (n, 1)}
    assert all(v.dtype == np.float32 for v in data.values())
    assert 0 <= data["img"].min() and data["img"].max() <= 255 and (data["img"] == np.rint(data["img"])).all()
    assert (0 <= data["state"][:, 4]).all() and (data["state"][:, 4] < 2 * np.pi).all()
    assert "2" in describe(rb)


def test_generated_actions_replay_to_the_recorded_states(demos):
    rb = ReplayBuffer.open(demos[0])
    ep = rb.get_episode(1)
    env = PushTEnv(obs_type="state")
    env.set_state(ep["state"][0])
    for t in range(len(ep["action"]) - 1):
        env.step(ep["action"][t])
        np.testing.assert_allclose(env.sim.state()[:4], ep["state"][t + 1, :4], atol=1e-3)
    _, _, terminated, _, _ = env.step(ep["action"][-1])  # the last action solves the task
    assert terminated


def test_polx_data_info_reads_generated_demos(demos):
    from polx.cli import main

    result = CliRunner().invoke(main, ["data", "info", str(demos[0])])
    assert result.exit_code == 0, result.output
    assert "img" in result.output and "keypoint" in result.output


def test_polx_data_generate_in_worker_processes_writes_the_same_demos(tmp_path, demos):
    from polx.cli import main

    out = tmp_path / "cli.zarr"
    args = ["data", "generate", "--env", "pusht", "--episodes", "2", "--out", str(out), "--seed", str(QUICK_SEEDS[0])]
    result = CliRunner().invoke(main, [*args, "--workers", "2"])
    assert result.exit_code == 0, result.output
    here, there = ReplayBuffer.open(demos[0]), ReplayBuffer.open(out)
    np.testing.assert_array_equal(here.episode_ends, there.episode_ends)
    for key, value in here.load().items():
        np.testing.assert_array_equal(value, there.load([key])[key])


def test_generation_that_cannot_succeed_writes_nothing(tmp_path):
    out = tmp_path / "none.zarr"
    adapter = PushTAdapter(PushTConfig(demo_max_steps=2))  # no start state is solved in 2 steps
    with pytest.raises(PolxError, match="--keep-all"):
        adapter.generate_demos(out, 1, seed=0, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    summary = adapter.generate_demos(out, 1, seed=0, keep_all=True, progress=False)
    assert summary["episodes"] == 1 and summary["success_rate"] == 0 and ReplayBuffer.open(out).n_steps == 2


def test_default_dataset_is_generated_once_in_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLX_CACHE_DIR", str(tmp_path / "cache"))
    adapter = PushTAdapter(PushTConfig(default_data="expert", default_episodes=1, default_seed=QUICK_SEEDS[0], render_size=32))
    path = adapter.default_dataset(progress=False)
    assert path.parent == tmp_path / "cache" and ReplayBuffer.open(path).n_episodes == 1
    assert "generating the PushT expert dataset" in capsys.readouterr().err

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(adapter, "generate_demos", fail)
    assert adapter.default_dataset(progress=False) == path


# ---------------------------------------------------------------------------------------------
# the adapter


@pytest.mark.parametrize("obs_type", ["image", "keypoints", "state"])
def test_env_observations_and_dataset_obs_follow_shape_meta(obs_type, demos):
    adapter = PushTAdapter(PushTConfig(obs_type=obs_type))
    obs, info = adapter.make_env().reset(seed=0)
    meta = adapter.shape_meta["obs"]
    assert {k: list(v.shape) for k, v in obs.items()} == {k: v["shape"] for k, v in meta.items()}
    assert "is_success" in info and "coverage" in info

    data = ReplayBuffer.open(demos[0]).load()
    converted = adapter.dataset_obs(data)
    assert set(converted) == set(meta) | {"action"}
    for key, spec in meta.items():
        if spec["type"] == "rgb":  # uint8 (N, H, W, C) in datasets
            assert converted[key].dtype == np.uint8 and list(converted[key].shape[1:]) == [*spec["shape"][1:], 3]
        else:
            assert converted[key].dtype == np.float32 and list(converted[key].shape[1:]) == spec["shape"]
    if obs_type == "keypoints":
        np.testing.assert_array_equal(converted["keypoints"][:, 18:], data["state"][:, :2])


def test_training_reads_image_frames_lazily_through_a_bounded_cache(demos):
    """The trainer's path (``load_policy_arrays``): frames are cast to uint8 block by block, never
    loaded whole, and gather exactly what the eager conversion gives."""
    from polx.data.dataset import load_policy_arrays
    from polx.data.formats import CachedFrames

    adapter = PushTAdapter(PushTConfig(obs_type="image", frame_cache_mb=1))
    arrays, ends = load_policy_arrays(demos[0], adapter, registry=load_plugins().registry)
    eager = adapter.dataset_obs(ReplayBuffer.open(demos[0]).load())
    frames = arrays["image"]
    assert isinstance(frames, CachedFrames) and frames.dtype == np.uint8 and frames.shape == eager["image"].shape
    idx = np.random.default_rng(0).integers(0, len(frames), size=(16, 2))
    np.testing.assert_array_equal(frames[idx], eager["image"][idx])
    assert frames.bytes <= 1 << 20 and np.array_equal(ends, ReplayBuffer.open(demos[0]).episode_ends)


@pytest.mark.skipif(not DATASET.exists(), reason=f"real PushT dataset not found at {DATASET}")
def test_dataset_obs_reads_the_published_dataset():
    ep = ReplayBuffer.open(DATASET).get_episode(3)
    out = PushTAdapter(PushTConfig()).dataset_obs(ep)
    assert out["image"].dtype == np.uint8 and out["image"].shape[1:] == (96, 96, 3)
    np.testing.assert_array_equal(out["image"], ep["img"].astype(np.uint8))
    np.testing.assert_array_equal(out["agent_pos"], ep["state"][:, :2])


def test_dataset_obs_names_what_is_missing_or_mismatched():
    from polx.errors import DatasetError

    adapter = PushTAdapter(PushTConfig())
    with pytest.raises(DatasetError, match="data/img"):
        adapter.dataset_obs({"state": np.zeros((3, 5)), "action": np.zeros((3, 2))})
    with pytest.raises(DatasetError, match="render_size"):
        adapter.dataset_obs({"img": np.zeros((3, 64, 64, 3)), "state": np.zeros((3, 5)), "action": np.zeros((3, 2))})

"""RoboIMIAdapter: shape_meta agrees with rollouts and datasets; demos write, read back and cache."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from polx.cli import main
from polx.config import EncoderConfig, EvalConfig, PolicyConfig, converter
from polx.data.replay_buffer import ReplayBuffer
from polx.errors import DatasetError, PolxError
from polx_envs.roboimi.adapter import RoboIMIAdapter
from polx_envs.roboimi.config import ROBOIMI_PRESET, RoboIMIConfig
from polx_envs.roboimi.demos import default_dataset_path
from polx_envs.roboimi.env import RoboIMIEnv

SIZE = 16


def test_make_env_observations_match_shape_meta_and_pickle():
    adapter = pickle.loads(pickle.dumps(RoboIMIAdapter(RoboIMIConfig(image_size=SIZE))))
    assert adapter.name == "roboimi"
    meta = adapter.shape_meta
    assert meta["action"] == {"shape": [16], "groups": {"left": [0, 8], "right": [8, 16]}}  # one group per arm
    assert {k: v["type"] for k, v in meta["obs"].items()} == {"r_vis": "rgb", "top": "rgb", "front": "rgb", "qpos": "low_dim"}
    env = pickle.loads(pickle.dumps(adapter.make_env()))
    obs, _ = env.reset(seed=0)
    assert set(obs) == set(meta["obs"])
    for key, spec in meta["obs"].items():
        assert list(obs[key].shape) == spec["shape"] and obs[key].dtype == np.float32
    for cam in ("r_vis", "top", "front"):
        assert 0.0 <= obs[cam].min() and obs[cam].max() <= 1.0 and obs[cam].std() > 0.02
    raw = env.unwrapped._observation()["images"]["front"]
    assert np.allclose(obs["front"], raw.transpose(2, 0, 1) / 255.0)
    assert env.observation_space.contains(obs)
    _, _, _, _, info = env.step(env.action_space.sample() * 0 + env.unwrapped.action_space.high * 0.5)
    assert set(info) >= {"is_success", "stage"}


def test_dataset_obs_converts_and_names_what_is_wrong():
    adapter = RoboIMIAdapter(RoboIMIConfig(image_size=SIZE))
    n = 5
    data = {cam: np.zeros((n, SIZE, SIZE, 3), np.uint8) for cam in ("r_vis", "top", "front")}
    data.update(qpos=np.zeros((n, 14)), action=np.ones((n, 16)), ee_pose=np.zeros((n, 14)))
    out = adapter.dataset_obs(data)
    assert set(out) == {"r_vis", "top", "front", "qpos", "action"}
    assert out["qpos"].dtype == np.float32 and out["action"].dtype == np.float32 and out["top"].dtype == np.uint8
    with pytest.raises(DatasetError, match="lacks top"):
        adapter.dataset_obs({k: v for k, v in data.items() if k != "top"})
    with pytest.raises(DatasetError, match=r"front images are uint8 \(32, 32, 3\), expected uint8 \(16, 16, 3\)"):
        adapter.dataset_obs({**data, "front": np.zeros((n, 32, 32, 3), np.uint8)})
    with pytest.raises(DatasetError, match=r"action has shape \(5, 14\), expected \(N, 16\)"):
        adapter.dataset_obs({**data, "action": np.zeros((n, 14))})


def test_generated_demos_read_back_with_polx_data_info(tmp_path):
    config = RoboIMIConfig(image_size=SIZE, max_steps=12)  # too short to succeed: keep_all keeps them
    adapter = RoboIMIAdapter(config)
    out = tmp_path / "demos.zarr"
    summary = adapter.generate_demos(out, episodes=2, seed=3, keep_all=True, progress=False)
    assert summary["episodes"] == 2 and summary["steps"] == 24 and summary["seeds_tried"] == 2
    assert summary["success_rate"] == 0.0 and summary["env"] == "roboimi"
    result = CliRunner().invoke(main, ["data", "info", str(out)])
    assert result.exit_code == 0, result.output
    assert "episodes: 2" in result.output and "steps: 24" in result.output
    for key in ("r_vis", "top", "front", "qpos", "action", "ee_pose"):
        assert f"data/{key}" in result.output

    rb = ReplayBuffer.open(out)
    data = rb.load()
    assert data["front"].shape == (24, SIZE, SIZE, 3) and data["front"].dtype == np.uint8
    assert data["ee_pose"].shape == (24, 14) and data["action"].shape == (24, 16)
    obs = adapter.dataset_obs(data)
    assert obs["qpos"].shape == (24, 14)
    # the first step of each episode is that seed's reset observation
    env = RoboIMIEnv(config)
    for episode, seed in enumerate((3, 4)):
        first, _ = env.reset(seed=seed)
        stored = rb.get_episode(episode)
        assert np.array_equal(stored["qpos"][0], first["qpos"])
        assert np.array_equal(stored["front"][0], first["images"]["front"])


def test_workers_write_the_same_dataset_in_seed_order(tmp_path):
    adapter = RoboIMIAdapter(RoboIMIConfig(image_size=SIZE, max_steps=5))
    adapter.generate_demos(tmp_path / "one.zarr", episodes=3, seed=0, workers=1, keep_all=True, progress=False)
    adapter.generate_demos(tmp_path / "two.zarr", episodes=3, seed=0, workers=2, keep_all=True, progress=False)
    one, two = ReplayBuffer.open(tmp_path / "one.zarr").load(), ReplayBuffer.open(tmp_path / "two.zarr").load()
    for key in one:
        assert np.array_equal(one[key], two[key]), key


def test_generate_fails_cleanly_when_the_expert_cannot_succeed(tmp_path):
    adapter = RoboIMIAdapter(RoboIMIConfig(image_size=8, max_steps=3, cameras=("top",)))
    with pytest.raises(PolxError, match="succeeded on only 0 of 12 seeds"):
        adapter.generate_demos(tmp_path / "none.zarr", episodes=1, progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_default_dataset_is_generated_once_into_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLX_CACHE_DIR", str(tmp_path))
    config = RoboIMIConfig(image_size=8, cameras=("front",), default_episodes=1)
    adapter = RoboIMIAdapter(config)
    path = adapter.default_dataset(progress=False)
    assert path == default_dataset_path(config) and path.is_relative_to(tmp_path)
    assert "generating the RoboIMI expert dataset (1 episodes" in capsys.readouterr().err
    rb = ReplayBuffer.open(path)
    assert rb.n_episodes == 1 and rb.keys() == ["action", "ee_pose", "front", "qpos"]
    assert adapter.default_dataset(progress=False) == path
    assert capsys.readouterr().err == ""  # cached: no second generation
    assert default_dataset_path(RoboIMIConfig(image_size=8, cameras=("front",), default_episodes=2)) != path


def test_preset_is_valid_core_config():
    converter.structure(ROBOIMI_PRESET["eval"], EvalConfig)
    converter.structure(ROBOIMI_PRESET["policy"], PolicyConfig)
    assert converter.structure(ROBOIMI_PRESET["encoder"], EncoderConfig).crop_shape == (84, 84)
    config = converter.structure(ROBOIMI_PRESET["env"], RoboIMIConfig)
    assert config.image_size >= 84  # the crop must fit
    assert ROBOIMI_PRESET["eval"]["n_test"] == 5


def test_cli_data_generate_for_roboimi(tmp_path):
    out = tmp_path / "cli.zarr"
    args = ["data", "generate", "--env", "roboimi", "--episodes", "1", "--out", str(out), "--keep-all"]
    result = CliRunner().invoke(main, [*args, "env.image_size=8", "env.max_steps=4"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])  # the progress bar is on stderr
    assert summary["episodes"] == 1 and summary["steps"] == 4 and summary["image_size"] == 8
    assert ReplayBuffer.open(out).n_steps == 4

"""The design's RoboIMI flow through the command line: expert episodes written as an ACT HDF5
episode directory (``polx data generate --format hdf5``), then ``polx train --env roboimi`` from
that directory; a dataset whose shapes do not fit the env exits 2 naming both, before any run
directory exists. Tiny sizes: wiring, not quality."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polx import cli
from polx.plugins import load_plugins

SMALL_ENV = ["env.image_size=16", "env.max_steps=10"]
TINY = [
    "train.max_steps=2", "train.batch_size=4", "train.progress=false", "train.val_every=2", "train.val_batches=1",
    "data.val_ratio=0.5", "eval.n_test=1", "eval.n_train=0", "eval.max_steps=4", "eval.n_vis=0", "encoder.feature_dim=32",
    "encoder.crop_shape=[12,12]", "policy.horizon=4", "policy.n_action_steps=2",
    "head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1",
]


@pytest.fixture(scope="module")
def act_dir(tmp_path_factory) -> Path:
    names = load_plugins(entry_points=list(metadata.entry_points(group="polx"))).registry.names("env")
    if "roboimi" not in names:
        pytest.skip("polx-plugin-envs (roboimi) is not installed")
    import torchvision  # noqa: F401  (before MuJoCo's GL context: see tests/test_e2e_matrix.py)

    out = tmp_path_factory.mktemp("act") / "roboimi_act"
    args = ["data", "generate", "--env", "roboimi", "--episodes", "2", "--out", str(out), "--keep-all", "--format", "hdf5", *SMALL_ENV]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["format"] == "hdf5" and summary["episodes"] == 2 and summary["out"] == str(out)
    return out


def test_generate_writes_the_act_layout_with_three_cameras(act_dir: Path):
    assert sorted(p.name for p in act_dir.iterdir()) == ["episode_0.hdf5", "episode_1.hdf5"]
    assert not [p for p in act_dir.parent.iterdir() if p.name.startswith(".")], "the staging store was left behind"
    with h5py.File(act_dir / "episode_0.hdf5", "r") as f:
        assert f.attrs["sim"]  # generated in simulation (a converted dataset does not claim it)
        assert sorted(f["observations/images"]) == ["front", "r_vis", "top"]
        assert f["observations/images/top"].shape == (10, 16, 16, 3) and f["observations/images/top"].dtype == "uint8"
        assert f["observations/qpos"].shape == (10, 14) and f["action"].shape == (10, 16)


@pytest.mark.parametrize("workers", [0, 2])  # 2: forked DataLoader workers reopen the HDF5 files
def test_roboimi_trains_from_the_hdf5_directory(act_dir: Path, tmp_path: Path, workers: int):
    run = tmp_path / "run"
    args = ["train", "--head", "imf_attnres", "--env", "roboimi", "--dataset", str(act_dir), "--run-dir", str(run), *SMALL_ENV, *TINY,
            "eval.at_end=false", f"train.num_workers={workers}"]  # rollouts are tests/test_e2e_matrix.py's; this is about the data
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines()]
    assert {"train_loss", "val_loss"} <= {k for r in records for k in r}
    assert json.loads((run / "manifest.json").read_text())["dataset"] == str(act_dir)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_shapes_that_do_not_fit_the_env_exit_2_naming_both_before_writing(act_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = ["train", "--head", "imf_attnres", "--env", "roboimi", "--dataset", str(act_dir), "--run-dir", str(run),
            "env.image_size=24", "env.max_steps=10", *TINY]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2, result.output
    assert "(16, 16, 3)" in result.output and "(24, 24, 3)" in result.output and str(act_dir) in result.output
    assert not run.exists()


def test_a_wrong_dataset_format_exits_2_naming_the_choices(act_dir: Path, tmp_path: Path):
    args = ["train", "--head", "imf_attnres", "--env", "roboimi", "--dataset", str(act_dir), "--dataset-format", "parquet",
            "--run-dir", str(tmp_path / "run"), *SMALL_ENV, *TINY]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2 and "unknown dataset format 'parquet'" in result.output and "hdf5, lerobot, zarr" in result.output


def test_training_without_an_env_takes_its_shapes_from_a_lerobot_dataset(tmp_path: Path):
    """LeRobot v3.0 files (written by pyarrow through polx's writer); no --env: shapes from the data,
    frames read lazily through a 1 MB cache and resized from 20x24 to 16x16."""
    import numpy as np

    from polx.data.lerobot_format import write_lerobot
    from polx.base.checkpoint import LATEST, load_checkpoint

    rng = np.random.default_rng(0)
    episodes = [
        {"action": rng.normal(size=(n, 2)).astype(np.float32), "state": rng.normal(size=(n, 3)).astype(np.float32),
         "vel": rng.normal(size=(n, 2, 2)), "wrist": rng.integers(0, 256, size=(n, 20, 24, 3), dtype=np.uint8)}
        for n in (9, 7, 8, 6)
    ]
    write_lerobot(tmp_path / "lr", episodes)
    run = tmp_path / "run"
    args = ["train", "--head", "imf_attnres", "--dataset", str(tmp_path / "lr"), "--run-dir", str(run), "encoder.image_size=16", "env.frame_cache_mb=1", *TINY]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines()]
    keys = {k for r in records for k in r}
    assert {"train_loss", "val_loss", "val_action_mse"} <= keys and not any(k.startswith("test") for k in keys)
    spec = load_checkpoint(run / "checkpoints" / LATEST)["spec"]
    assert spec["env"] == "offline" and spec["obs"] == {"wrist": [3, 16, 16], "low_dim": [7]}  # state (3) + vel (2x2)


def test_encoder_image_size_that_an_env_does_not_render_exits_2_before_writing(act_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = ["train", "--head", "imf_attnres", "--env", "roboimi", "--dataset", str(act_dir), "--run-dir", str(run),
            *SMALL_ENV, "encoder.image_size=32", *TINY]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2, result.output
    assert "encoder.image_size=32" in result.output and "16x16" in result.output
    assert not run.exists()


def test_training_without_an_env_refuses_env_image_size_naming_the_encoder_key(act_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli.main, ["train", "--head", "imf_attnres", "--dataset", str(act_dir), "--run-dir", str(run), "env.image_size=16", *TINY])
    assert result.exit_code == 2 and "encoder.image_size" in result.output, result.output
    assert not run.exists()


def test_a_dataset_without_an_env_declares_its_arms_through_env_action_groups(act_dir: Path, tmp_path: Path):
    """RoboIMI's HDF5 episodes trained env-less, the 16-dim action split into arms by the user:
    packed layout and split experts run, and each arm's validation loss is logged."""
    run = tmp_path / "run"
    args = ["train", "--head", "imf_attnres", "--dataset", str(act_dir), "--run-dir", str(run), "encoder.image_size=16", *TINY,
            "env.action_groups={left: [0, 8], right: [8, 16]}", "policy.action_layout=packed", "head.action_expert_mode=split_independent"]  # fmt: skip
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    keys = {k for line in (run / "logs.json.txt").read_text().splitlines() for k in json.loads(line)}
    assert {"val_group_loss_left", "val_group_loss_right"} <= keys


@pytest.fixture(scope="module")
def five_dim_store(tmp_path_factory) -> Path:
    import numpy as np

    from polx.data.replay_buffer import ReplayBuffer

    out = tmp_path_factory.mktemp("groups") / "d.zarr"
    with ReplayBuffer.writer(out) as rb:
        rb.add_episode({"action": np.zeros((4, 5), np.float32), "state": np.zeros((4, 2), np.float32)})
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 5), max_size=4), drop=st.booleans())
def test_env_action_groups_are_accepted_exactly_when_they_tile_the_action(five_dim_store: Path, cuts, drop):
    """Any list of cut points makes groups; they are taken as they are when they tile [0, 5) in
    order with no empty group, and refused naming env.action_groups otherwise."""
    from polx.data.offline_env import OfflineAdapter, OfflineEnvConfig
    from polx.errors import UserInputError

    bounds = [0, *cuts, 5]
    groups = {f"g{i}": (a, b) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))}
    if drop and len(groups) > 1:
        groups.pop(f"g{len(groups) // 2}")  # a gap (or a short cover)
    spans = list(groups.values())
    starts, stops = [a for a, _ in spans], [b for _, b in spans]
    tiles = starts == [0, *stops[:-1]] and stops[-1] == 5 and all(b > a for a, b in spans)
    config = OfflineEnvConfig(dataset=str(five_dim_store), action_groups=groups)
    if tiles:
        assert OfflineAdapter(config, load_plugins().registry).shape_meta["action"] == {"shape": [5], "groups": {k: list(v) for k, v in groups.items()}}
    else:
        with pytest.raises(UserInputError, match=r"^env\.action_groups: "):
            OfflineAdapter(config, load_plugins().registry)


def test_bad_env_action_groups_exit_2_before_a_run_exists(five_dim_store: Path, tmp_path: Path):
    run = tmp_path / "run"
    for groups, message in [("{a: [0, 2], b: [3, 5]}", "group 'b': [3, 5) must start at 2"), ("[0, 5]", "expected a mapping")]:
        result = CliRunner().invoke(cli.main, ["train", "--head", "imf_attnres", "--dataset", str(five_dim_store), "--run-dir", str(run),
                                               f"env.action_groups={groups}", *TINY])  # fmt: skip
        assert result.exit_code == 2 and message in result.output, result.output
        assert not run.exists()

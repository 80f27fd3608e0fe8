"""PushT's default dataset: the shipped human demonstrations, built into a cached replay buffer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from polx.data.replay_buffer import ReplayBuffer
from polx_envs.pusht import human_demos
from polx_envs.pusht.adapter import PushTAdapter
from polx_envs.pusht.config import PushTConfig

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"
needs_real = pytest.mark.skipif(not REAL.exists(), reason=f"the published PushT dataset is not at {REAL}")


def test_shipped_arrays_are_what_the_module_says():
    assert hashlib.sha256(human_demos.ARRAYS_PATH.read_bytes()).hexdigest() == human_demos.ARRAYS_SHA256
    arrays = human_demos.load_arrays()
    ends = arrays["episode_ends"]
    assert len(ends) == human_demos.N_EPISODES and ends[-1] == human_demos.N_STEPS
    lengths = np.diff(ends, prepend=0)
    assert lengths.min() == 49 and lengths.max() == 246
    n = human_demos.N_STEPS
    shapes = {"state": (n, 5), "keypoint": (n, 9, 2), "action": (n, 2), "n_contacts": (n, 1)}
    for key, shape in shapes.items():
        assert arrays[key].shape == shape and arrays[key].dtype == np.float32 and np.isfinite(arrays[key]).all()
    assert ((arrays["action"] >= 0) & (arrays["action"] <= 512)).all()


def test_a_damaged_install_fails_naming_the_file(tmp_path, monkeypatch):
    from polx.errors import DatasetError

    broken = tmp_path / "pusht_human_v7.npz"
    broken.write_bytes(human_demos.ARRAYS_PATH.read_bytes()[:-10])
    monkeypatch.setattr(human_demos, "ARRAYS_PATH", broken)
    with pytest.raises(DatasetError, match="damaged"):
        human_demos.load_arrays()


def test_default_dataset_for_keypoints_is_the_human_demos_without_frames(tmp_path, monkeypatch):
    monkeypatch.setenv("POLX_CACHE_DIR", str(tmp_path))
    adapter = PushTAdapter(PushTConfig(obs_type="keypoints"))
    path = adapter.default_dataset(progress=False)
    assert path.parent == tmp_path and "human" in path.name
    rb = ReplayBuffer.open(path)
    data = rb.load(["state", "keypoint", "action", "n_contacts"])
    shipped = human_demos.load_arrays()
    for key in data:
        np.testing.assert_array_equal(data[key], shipped[key])
    np.testing.assert_array_equal(rb.episode_ends, shipped["episode_ends"])
    obs = adapter.dataset_obs(data)
    assert obs["keypoints"].shape == (human_demos.N_STEPS, 20)
    assert adapter.default_dataset(progress=False) == path  # cached: the second call reuses it


@needs_real
def test_shipped_arrays_equal_the_published_dataset():
    rb = ReplayBuffer.open(REAL)
    published = rb.load(["state", "keypoint", "action", "n_contacts"])
    shipped = human_demos.load_arrays()
    for key, value in published.items():
        np.testing.assert_array_equal(shipped[key], value.astype(np.float32))
    np.testing.assert_array_equal(shipped["episode_ends"], rb.episode_ends)


@needs_real
def test_rendered_frames_equal_the_published_frames():
    rb = ReplayBuffer.open(REAL)
    idx = np.arange(0, human_demos.N_STEPS, 1283)  # 20 frames spread over the dataset
    published = rb.load(["img"])["img"][idx]
    frames = human_demos.render_states(human_demos.load_arrays()["state"][idx], 96)
    np.testing.assert_array_equal(frames, published.astype(np.uint8))


def test_cache_names_change_with_every_setting_that_changes_the_data():
    base = PushTConfig(obs_type="image", default_data="expert")
    names = {PushTAdapter(base).default_dataset_name()}
    import attrs

    changes = ({"legacy": False}, {"demo_max_steps": 200}, {"default_episodes": 10}, {"default_seed": 3}, {"render_size": 64}, {"expert_travel_speed": 15.0})
    for change in changes:
        names.add(PushTAdapter(attrs.evolve(base, **change)).default_dataset_name())
    names.add(PushTAdapter(attrs.evolve(base, default_data="human")).default_dataset_name())
    names.add(PushTAdapter(attrs.evolve(base, default_data="human", render_size=64)).default_dataset_name())
    assert len(names) == 9
    # a setting added later keeps the names its default had, so cached datasets are found again
    assert PushTAdapter(base).default_dataset_name() == "pusht_expert_v3_200ep_seed0_96px_43dbb815d7.zarr"
    assert PushTAdapter(attrs.evolve(base, frame_cache_mb=1)).default_dataset_name() == PushTAdapter(base).default_dataset_name()
    # low-dim observations share one frameless human dataset whatever the render size
    kp = {PushTAdapter(PushTConfig(obs_type=o, render_size=s)).default_dataset_name() for o in ("keypoints", "state") for s in (64, 96)}
    assert len(kp) == 1

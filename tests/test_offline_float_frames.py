"""Float camera frames (Diffusion Policy's PushT ``img`` is float32 0..255) train as a camera without
an env: cast to uint8 per block, never flattened into a 27,648-wide low-dim vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polx.data.dataset import _LoadOnAccess
from polx.data.formats import info_dict, open_dataset
from polx.data.offline_env import LOW_DIM_KEY, OfflineAdapter, OfflineEnvConfig
from polx.data.replay_buffer import ReplayBuffer
from polx.plugins import load_plugins

REGISTRY = load_plugins().registry
PUSHT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"


def adapter_for(path: Path, image_size: int | None = None) -> OfflineAdapter:
    return OfflineAdapter(OfflineEnvConfig(dataset=str(path), image_size=image_size, frame_cache_mb=1), REGISTRY)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31 - 1),
    unit=st.booleans(),
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_float_frames_become_a_uint8_camera_equal_to_the_rounded_values(tmp_path_factory, seed, unit, lengths, dtype):
    """0..255 frames are rounded, 0..1 frames are scaled by 255 first; the other arrays stay low-dim."""
    rng = np.random.default_rng(seed)
    top = 1.0 if unit else 255.0
    episodes = [
        {"action": rng.normal(size=(n, 2)).astype(np.float32), "state": rng.normal(size=(n, 3)).astype(np.float32),
         "img": (rng.uniform(0, top, size=(n, 10, 12, 3))).astype(dtype)}
        for n in lengths
    ]
    episodes[0]["img"][0, 0, 0, 0] = top  # the scale is decided by the first frames' maximum
    path = tmp_path_factory.mktemp("float") / "d.zarr"
    with ReplayBuffer.writer(path) as rb:
        for ep in episodes:
            rb.add_episode(ep)
    adapter = adapter_for(path)
    assert adapter.shape_meta["obs"] == {"img": {"shape": [3, 10, 12], "type": "rgb"}, LOW_DIM_KEY: {"shape": [3], "type": "low_dim"}}
    obs = adapter.dataset_obs(_LoadOnAccess(open_dataset(path, registry=REGISTRY)))
    frames = np.asarray(obs["img"][np.arange(sum(lengths))])
    stored = np.concatenate([ep["img"] for ep in episodes]).astype(np.float64)
    assert frames.dtype == np.uint8
    assert np.array_equal(frames, np.clip(np.rint(stored * (255.0 if unit else 1.0)), 0, 255).astype(np.uint8))
    assert info_dict(open_dataset(path, registry=REGISTRY))["cameras"] == {"img": {"height": 10, "width": 12, "channels": 3}}


def test_a_float_array_that_is_not_frames_stays_low_dim(tmp_path: Path):
    """Four dims but a channel count of 5, or sides under 8: not a camera."""
    path = tmp_path / "d.zarr"
    with ReplayBuffer.writer(path) as rb:
        rb.add_episode({"action": np.zeros((3, 2), np.float32), "grid": np.zeros((3, 4, 4, 3), np.float32), "wide": np.zeros((3, 9, 9, 5), np.float32)})
    assert adapter_for(path).shape_meta["obs"] == {LOW_DIM_KEY: {"shape": [4 * 4 * 3 + 9 * 9 * 5], "type": "low_dim"}}


@pytest.mark.skipif(not PUSHT.exists(), reason=f"real PushT dataset not present at {PUSHT}")
def test_diffusion_policys_pusht_img_is_a_camera_resized_at_load():
    adapter = adapter_for(PUSHT, image_size=64)
    assert adapter.shape_meta["obs"] == {"img": {"shape": [3, 64, 64], "type": "rgb"}, LOW_DIM_KEY: {"shape": [18 + 1 + 5], "type": "low_dim"}}
    assert adapter.float_scale == {"img": 1.0}
    obs = adapter.dataset_obs(_LoadOnAccess(open_dataset(PUSHT, registry=REGISTRY)))
    first = np.asarray(obs["img"][np.arange(4)])
    assert first.dtype == np.uint8 and first.shape == (4, 64, 64, 3) and first.max() > 200

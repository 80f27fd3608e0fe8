"""The real PushT human demonstrations (diffusion_policy's pusht_cchi_v7_replay.zarr) load unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polx.data.dataset import PolicyDataset
from polx.data.replay_buffer import ReplayBuffer, describe

PUSHT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"

pytestmark = pytest.mark.skipif(not PUSHT.exists(), reason=f"real PushT dataset not present at {PUSHT}")


def file_state(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size) for p in path.rglob("*")}


def test_real_pusht_opens_with_the_published_counts():
    before = file_state(PUSHT)
    rb = ReplayBuffer.open(PUSHT)
    assert rb.n_episodes == 206 and rb.n_steps == 25_650
    assert rb.keys() == ["action", "img", "keypoint", "n_contacts", "state"]
    assert rb.array_info("img")[0] == (25_650, 96, 96, 3)
    text = describe(rb)
    assert "episodes: 206" in text and "steps: 25650" in text and "min 49" in text

    low_dim = rb.load(["action", "state"])
    assert low_dim["action"].shape == (25_650, 2) and low_dim["state"].shape == (25_650, 5)
    first = rb.get_episode(0, keys=["img"])["img"]
    assert first.shape == (161, 96, 96, 3) and 0 <= first.min() and first.max() <= 255
    assert file_state(PUSHT) == before  # reading never writes


def test_real_pusht_windows_from_low_dim_arrays():
    rb = ReplayBuffer.open(PUSHT)
    raw = rb.load(["action", "state"])
    arrays = {"agent_pos": raw["state"][:, :2], "action": raw["action"]}
    ds = PolicyDataset(arrays, rb.episode_ends, horizon=16, n_obs_steps=2, n_action_steps=8)
    assert len(ds) == int((rb.episode_lengths - 16 + 1 + 7 + 1).clip(min=0).sum())
    batch = ds.get_batch(np.arange(0, len(ds), 997))
    assert batch["action"].shape == (len(range(0, len(ds), 997)), 16, 2)
    assert torch.isfinite(batch["action"]).all() and batch["action"].abs().max() <= 600  # PushT's 512 px board

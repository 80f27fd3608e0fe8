"""Core's dataset-caching helper for env plugins: cache names, the cached build, the seed loop."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.data.cache import SUMMARY_KEYS, cache_name, cache_root, cached_dataset, collect_demos, data_fields
from polx.data.replay_buffer import ReplayBuffer
from polx.errors import DatasetError, PolxError


@attrs.define(frozen=True, kw_only=True)
class EnvConfig:
    legacy: bool = True
    max_steps: int = 300
    render_size: int = 96
    trajectory_image_size: int = 256  # drawing only: not part of the data


values = st.fixed_dictionaries({"legacy": st.booleans(), "max_steps": st.integers(1, 999), "render_size": st.integers(8, 512)})


@settings(max_examples=60, deadline=None)
@given(a=values, b=values, draw_a=st.integers(8, 999), draw_b=st.integers(8, 999))
def test_cache_names_differ_exactly_when_a_data_field_differs(a, b, draw_a, draw_b):
    name = lambda v, d: cache_name("demo", data_fields(EnvConfig(**v, trajectory_image_size=d), exclude=("trajectory_image_size",)), 1)  # noqa: E731
    assert (name(a, draw_a) == name(b, draw_b)) == (a == b)
    assert cache_name("demo", a, 1) != cache_name("demo", a, 2)  # a new dataset version invalidates


def test_cache_root_follows_polx_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("POLX_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path


def episode(seed: int):
    """Seeds divisible by 3 fail; episode length 1 + seed % 4."""
    n = 1 + seed % 4
    return {"action": np.full((n, 2), seed, np.float32), "obs": np.arange(n, dtype=np.float32)[:, None]}, seed % 3 != 0, float(seed)


def test_collect_demos_keeps_successes_in_seed_order_with_one_summary_schema(tmp_path):
    seen = []
    summary = collect_demos(tmp_path / "d.zarr", 4, episode, env="toy", seed=0, progress=False, on_result=lambda a, ok, x: seen.append(x))
    assert tuple(summary)[: len(SUMMARY_KEYS)] == SUMMARY_KEYS
    assert summary["episodes"] == 4 and summary["seeds_tried"] == 6 and summary["seeds"] == [0, 5] and seen == [0, 1, 2, 3, 4, 5]
    rb = ReplayBuffer.open(tmp_path / "d.zarr")
    assert [int(rb.get_episode(i)["action"][0, 0]) for i in range(4)] == [1, 2, 4, 5]
    assert summary["success_rate"] == pytest.approx(4 / 6) and summary["steps"] == rb.n_steps


def test_collect_demos_keep_all_and_too_few_successes(tmp_path):
    summary = collect_demos(tmp_path / "all.zarr", 3, episode, env="toy", keep_all=True, progress=False)
    assert summary["seeds_tried"] == 3 and ReplayBuffer.open(tmp_path / "all.zarr").n_episodes == 3
    never = lambda seed: (episode(seed)[0], False)  # noqa: E731
    with pytest.raises(PolxError, match="the toy expert succeeded on only 0 of 4 seeds"):
        collect_demos(tmp_path / "none.zarr", 2, never, env="toy", max_attempts=4, progress=False)
    assert not (tmp_path / "none.zarr").exists()


def test_cached_dataset_builds_once_and_refuses_a_damaged_cache(tmp_path, capsys):
    path = tmp_path / "c.zarr"
    builds = []
    build = lambda: builds.append(collect_demos(path, 1, episode, env="toy", seed=1, progress=False))  # noqa: E731
    assert cached_dataset(path, build, "making the toy set") == path
    assert cached_dataset(path, build, "making the toy set") == path
    assert len(builds) == 1 and "polx: making the toy set at" in capsys.readouterr().err
    (path / "meta" / "episode_ends" / ".zarray").write_text("{not json")
    with pytest.raises(DatasetError, match="c.zarr"):
        cached_dataset(path, build, "making the toy set")

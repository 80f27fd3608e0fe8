"""PolicyDataset and load_policy_arrays on small real zarr stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.data.dataset import PolicyDataset, chunks_from_actions, load_policy_arrays
from polx.data.replay_buffer import ReplayBuffer
from polx.errors import DatasetError
from polx.plugins import load_plugins

REGISTRY = load_plugins(entry_points=[]).registry  # core's own dataset formats

H, W = 6, 5


def make_arrays(lengths: list[int], seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Arrays as an adapter's dataset_obs returns them; action[:, 0] is the step index."""
    ends = np.cumsum(lengths)
    n = int(ends[-1])
    rng = np.random.default_rng(seed)
    arrays = {
        "image": rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8),
        "agent_pos": rng.normal(size=(n, 2)).astype(np.float32),
        "action": np.stack([np.arange(n), rng.normal(size=n)], axis=1).astype(np.float32),
    }
    return arrays, ends


def make_dataset(lengths=(7, 3, 12), horizon=6, n_obs_steps=2, n_action_steps=3, episode_mask=None, seed=0):
    arrays, ends = make_arrays(list(lengths), seed)
    ds = PolicyDataset(
        arrays,
        ends,
        horizon=horizon,
        n_obs_steps=n_obs_steps,
        n_action_steps=n_action_steps,
        episode_mask=episode_mask,
        rgb_keys=("image",),
    )
    return ds, arrays, ends


def stack_items(ds: PolicyDataset, idxs) -> dict:
    items = [ds[int(i)] for i in idxs]
    return {
        "obs": {k: torch.stack([it["obs"][k] for it in items]) for k in items[0]["obs"]},
        "action": torch.stack([it["action"] for it in items]),
        "action_is_pad": torch.stack([it["action_is_pad"] for it in items]),
    }


def assert_batches_equal(a: dict, b: dict) -> None:
    assert a["obs"].keys() == b["obs"].keys()
    for key in a["obs"]:
        assert a["obs"][key].dtype == b["obs"][key].dtype
        assert torch.equal(a["obs"][key], b["obs"][key]), key
    assert torch.equal(a["action"], b["action"]) and torch.equal(a["action_is_pad"], b["action_is_pad"])


def test_item_shapes_dtypes_and_image_conversion():
    ds, arrays, _ = make_dataset()
    item = ds[0]
    assert item["obs"]["image"].shape == (2, 3, H, W) and item["obs"]["image"].dtype == torch.uint8  # scaled on the device
    assert item["obs"]["agent_pos"].shape == (2, 2) and item["obs"]["agent_pos"].dtype == torch.float32
    assert item["action"].shape == (6, 2) and item["action"].dtype == torch.float32
    assert item["action_is_pad"].shape == (6,) and item["action_is_pad"].dtype == torch.bool
    # window 0 starts one step before episode 0 (pad_before = n_obs_steps - 1 = 1)
    assert item["action_is_pad"].tolist() == [True, False, False, False, False, False]
    assert item["action"][:, 0].tolist() == [0, 0, 1, 2, 3, 4]
    expected = torch.from_numpy(arrays["image"][[0, 0]]).permute(0, 3, 1, 2)
    assert torch.equal(item["obs"]["image"], expected)
    assert item["obs"]["image"].is_contiguous()
    assert torch.equal(item["obs"]["agent_pos"], torch.from_numpy(arrays["agent_pos"][[0, 0]]))


def test_frames_stay_uint8_through_get_batch():
    arrays, ends = make_arrays([4])
    arrays["image"][:] = 255
    arrays["image"][0] = 0
    ds = PolicyDataset(arrays, ends, horizon=2, n_obs_steps=2, n_action_steps=1, rgb_keys=("image",))
    batch = ds.get_batch(np.arange(len(ds)))
    assert batch["obs"]["image"].dtype == torch.uint8 and batch["obs"]["image"].is_contiguous()
    assert batch["obs"]["image"].min() == 0 and batch["obs"]["image"].max() == 255


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 15), min_size=1, max_size=5),
    horizon=st.integers(1, 8),
    data=st.data(),
)
def test_get_batch_equals_stacked_items(lengths, horizon, data):
    n_obs = data.draw(st.integers(1, horizon))
    n_act = data.draw(st.integers(1, horizon))
    ds, arrays, ends = make_dataset(lengths, horizon, n_obs, n_act)
    assert len(ds) == sum(max(n - horizon + n_obs - 1 + n_act - 1 + 1, 0) for n in lengths)
    if len(ds) == 0:
        return
    idxs = data.draw(st.lists(st.integers(0, len(ds) - 1), min_size=1, max_size=8))
    batch = ds.get_batch(idxs)
    assert batch["obs"]["image"].shape == (len(idxs), n_obs, 3, H, W)
    assert batch["action"].shape == (len(idxs), horizon, 2)
    assert_batches_equal(batch, stack_items(ds, idxs))
    # observations are the first n_obs_steps frames of the same window as the actions
    step_of_obs = batch["obs"]["agent_pos"][..., 0]  # (B, To)
    np.testing.assert_array_equal(
        step_of_obs.numpy(), arrays["agent_pos"][batch["action"][:, :n_obs, 0].long().numpy(), 0]
    )


def test_dataloader_collates_to_get_batch():
    ds, _, _ = make_dataset()
    loader = torch.utils.data.DataLoader(ds, batch_size=5, shuffle=False)
    first = next(iter(loader))
    assert_batches_equal(first, ds.get_batch(range(5)))


def test_episode_mask_selects_windows_from_those_episodes_only():
    ds, arrays, ends = make_dataset(episode_mask=np.array([False, True, True]))
    batch = ds.get_batch(range(len(ds)))
    steps = batch["action"][..., 0]
    assert steps.min() >= ends[0]  # nothing from episode 0
    full, _, _ = make_dataset()
    assert len(ds) < len(full)


def test_fit_normalizer_uses_only_the_selected_episodes():
    ds, arrays, ends = make_dataset(lengths=(5, 5), episode_mask=np.array([True, False]))
    norm = ds.fit_normalizer()
    assert sorted(norm.keys()) == ["action", "agent_pos", "image"]
    y = norm.normalize("action", torch.from_numpy(arrays["action"][:5]))
    assert torch.allclose(y.amin(0), -torch.ones(2)) and torch.allclose(y.amax(0), torch.ones(2))
    assert norm.normalize("action", torch.from_numpy(arrays["action"][5:]))[:, 0].min() > 1  # episode 1 unseen
    images = torch.rand(3, 2, 3, H, W)
    assert torch.equal(norm.normalize("image", images), images)


def test_bad_arguments():
    arrays, ends = make_arrays([5])
    sizes = dict(horizon=4, n_obs_steps=1, n_action_steps=1)
    with pytest.raises(ValueError, match="n_obs_steps"):
        PolicyDataset(arrays, ends, horizon=4, n_obs_steps=5, n_action_steps=1)
    with pytest.raises(ValueError, match="rgb key 'image' must be a uint8"):
        PolicyDataset({**arrays, "image": arrays["image"].astype(np.float32)}, ends, rgb_keys=("image",), **sizes)
    with pytest.raises(ValueError, match="agent_pos has 4 steps; expected 5"):
        PolicyDataset({**arrays, "agent_pos": arrays["agent_pos"][:4]}, ends, **sizes)
    with pytest.raises(ValueError, match="'action'"):
        PolicyDataset({"agent_pos": arrays["agent_pos"]}, ends, **sizes)


# ---------------------------------------------------------------------------------------------
# load_policy_arrays


class TinyAdapter:
    """Adapter-like: raw ``img`` (float 0..255) and ``state`` -> ``image`` uint8 and ``agent_pos``."""

    name = "tiny"
    shape_meta = {
        "obs": {"image": {"shape": [3, H, W], "type": "rgb"}, "agent_pos": {"shape": [2], "type": "low_dim"}},
        "action": {"shape": [2]},
    }

    def dataset_obs(self, data):
        return {
            "image": data["img"].astype(np.uint8),
            "agent_pos": data["state"][:, :2].astype(np.float32),
            "action": data["action"].astype(np.float32),
        }


def write_raw(path, lengths, seed=0):
    rng = np.random.default_rng(seed)
    episodes = [
        {
            "img": rng.integers(0, 256, (n, H, W, 3)).astype(np.float32),
            "state": rng.normal(size=(n, 5)).astype(np.float32),
            "action": rng.normal(size=(n, 2)).astype(np.float32),
        }
        for n in lengths
    ]
    with ReplayBuffer.writer(path) as rb:
        for ep in episodes:
            rb.add_episode(ep)
    return episodes


def test_load_policy_arrays_through_an_adapter(tmp_path):
    episodes = write_raw(tmp_path / "raw.zarr", [4, 6])
    arrays, ends = load_policy_arrays(tmp_path / "raw.zarr", TinyAdapter(), registry=REGISTRY)
    assert ends.tolist() == [4, 10]
    assert arrays["image"].dtype == np.uint8 and arrays["image"].shape == (10, H, W, 3)
    np.testing.assert_array_equal(arrays["agent_pos"], np.concatenate([e["state"][:, :2] for e in episodes]))
    ds = PolicyDataset(arrays, ends, horizon=4, n_obs_steps=2, n_action_steps=2, rgb_keys=("image",))
    assert len(ds) == (4 - 4 + 1 + 1 + 1) + (6 - 4 + 1 + 1 + 1)


def test_load_policy_arrays_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_policy_arrays(tmp_path / "missing.zarr", TinyAdapter(), registry=REGISTRY)
    write_raw(tmp_path / "raw.zarr", [3])

    class Forgetful(TinyAdapter):
        def dataset_obs(self, data):
            return {"action": data["action"]}

    with pytest.raises(DatasetError, match="lacks agent_pos, image") as err:
        load_policy_arrays(tmp_path / "raw.zarr", Forgetful(), registry=REGISTRY)
    assert str(tmp_path / "raw.zarr") in str(err.value)

    class WantsCamera(TinyAdapter):
        def dataset_obs(self, data):
            assert "top_cam" not in data and "img" in data
            return {**super().dataset_obs(data), "top": data["top_cam"]}

    with pytest.raises(DatasetError, match="needs the array 'top_cam', which is missing; it has: action, img, state"):
        load_policy_arrays(tmp_path / "raw.zarr", WantsCamera(), registry=REGISTRY)


def test_load_policy_arrays_reads_only_the_arrays_the_adapter_uses(tmp_path):
    write_raw(tmp_path / "raw.zarr", [3, 2])
    for chunk in (tmp_path / "raw.zarr" / "data" / "state").glob("0*"):
        chunk.write_bytes(b"not blosc")  # reading data/state now fails

    class ImageOnly(TinyAdapter):
        shape_meta = {"obs": {"image": {"shape": [3, H, W], "type": "rgb"}}, "action": {"shape": [2]}}

        def dataset_obs(self, data):
            return {"image": data["img"].astype(np.uint8), "action": data["action"]}

    arrays, ends = load_policy_arrays(tmp_path / "raw.zarr", ImageOnly(), registry=REGISTRY)
    assert sorted(arrays) == ["action", "image"] and ends.tolist() == [3, 5]
    with pytest.raises(DatasetError, match="data/state could not be read"):
        load_policy_arrays(tmp_path / "raw.zarr", TinyAdapter(), registry=REGISTRY)  # it does read data/state


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 15), min_size=1, max_size=5),
    horizon=st.integers(1, 8),
    data=st.data(),
)
def test_stored_chunks_give_one_window_per_step_whose_target_is_that_steps_chunk(lengths, horizon, data):
    """``action_chunks``: one window per step (short episodes included), its observations ending at
    that step and its target the chunk stored there, never padding; ``chunks_from_actions`` (each
    step's own demonstrated future, as a DAgger run stores a starting dataset) reproduces the plain
    dataset's window that ends its observations there."""
    n_obs = data.draw(st.integers(1, horizon))
    n_act = data.draw(st.integers(1, horizon))
    plain, arrays, ends = make_dataset(lengths, horizon, n_obs, n_act)
    windows = chunks_from_actions(arrays["action"], ends, horizon=horizon, n_obs_steps=n_obs)  # (N, horizon, A)
    kwargs = dict(horizon=horizon, n_obs_steps=n_obs, n_action_steps=n_act, rgb_keys=("image",))
    same = PolicyDataset(arrays, ends, action_chunks=windows, **kwargs)
    assert len(same) == int(ends[-1])
    batch = same.get_batch(np.arange(len(same)))
    newest = batch["obs"]["agent_pos"][:, -1].numpy()
    np.testing.assert_array_equal(newest, arrays["agent_pos"])  # window t's observations end at step t
    assert not batch["action_is_pad"].any() and batch["action"].shape == (len(same), horizon, 2)
    idxs = data.draw(st.lists(st.integers(0, len(same) - 1), min_size=1, max_size=8))
    assert_batches_equal(same.get_batch(idxs), stack_items(same, idxs))
    for i in range(len(plain)):  # a plain window whose observations end on a real step t: the same as window t
        step = plain.sampler.starts[i] + n_obs - 1
        if step < plain.sampler.episode_hi[i]:
            a, b = plain[i], same[int(step)]
            assert torch.equal(a["action"], b["action"]) and all(torch.equal(a["obs"][k], b["obs"][k]) for k in a["obs"])
    # any other chunks: window t's target is chunk t, and the normaliser covers the chunks too
    chunks = np.random.default_rng(len(idxs)).normal(size=windows.shape).astype(np.float32) * 100
    other = PolicyDataset(arrays, ends, action_chunks=chunks, **kwargs)
    np.testing.assert_array_equal(other.get_batch(np.arange(len(other)))["action"].numpy(), chunks)
    assert (other.fit_normalizer().normalize("action", torch.from_numpy(chunks)).abs() <= 1 + 1e-5).all()


def test_chunks_of_the_wrong_shape_are_refused():
    arrays, ends = make_arrays([5, 4])
    with pytest.raises(ValueError, match="action_chunk has shape"):
        PolicyDataset(arrays, ends, horizon=4, n_obs_steps=2, n_action_steps=2, action_chunks=np.zeros((9, 3, 2)))

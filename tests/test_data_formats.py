"""Dataset formats: detection, the zarr / hdf5 / lerobot readers on files their own libraries
write in tmp_path, bad input naming file and key, lazy arrays, conversion round trips."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polx.data.convert import convert_dataset
from polx.data.formats import CachedFrames, LazyArray, get_episode, info_dict, load_arrays, open_dataset
from polx.errors import DatasetError, UserInputError
from polx.plugins import load_plugins

REGISTRY = load_plugins(entry_points=[]).registry


def episodes_of(lengths, cams=("top",), size=(6, 8), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        ep = {"action": rng.normal(size=(n, 3)).astype(np.float32), "qpos": rng.normal(size=(n, 4)).astype(np.float64)}
        for cam in cams:
            ep[cam] = rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)
        out.append(ep)
    return out


def write_act_dir(root, episodes, bad=None):
    root.mkdir()
    for i, ep in enumerate(episodes):
        with h5py.File(root / f"episode_{i}.hdf5", "w") as f:
            f.attrs["sim"] = True
            f["action"] = ep["action"]
            f["observations/qpos"] = ep["qpos"]
            for cam in [k for k in ep if k not in ("action", "qpos")]:
                f[f"observations/images/{cam}"] = ep[cam]
    return root


def write_mp4(path, frames, fps=10):
    """Lossless RGB H.264 (libx264rgb, qp 0): decoded frames equal the written ones exactly."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def lerobot_features(ep):
    h, w = ep["top"].shape[1:3]
    return {
        "action": {"dtype": "float32", "shape": [3], "names": None},
        "observation.state": {"dtype": "float64", "shape": [4], "names": None},
        "observation.images.top": {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]},
        **{k: {"dtype": "int64" if k != "timestamp" else "float32", "shape": [1], "names": None}
           for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")},
    }


def table_of(ep, e, start, fps=10):
    n = len(ep["action"])
    return pa.table({
        "action": pa.FixedSizeListArray.from_arrays(pa.array(ep["action"].ravel()), 3),
        "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(ep["qpos"].ravel()), 4),
        "timestamp": pa.array((np.arange(n) / fps).astype(np.float32)),
        "frame_index": pa.array(np.arange(n)),
        "episode_index": pa.array(np.full(n, e)),
        "index": pa.array(np.arange(start, start + n)),
        "task_index": pa.array(np.zeros(n, np.int64)),
    })


def write_lerobot_v21(root, episodes, fps=10):
    (root / "meta").mkdir(parents=True)
    info = {
        "codebase_version": "v2.1", "fps": fps, "chunks_size": 1000, "features": lerobot_features(episodes[0]),
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    start = 0
    for e, ep in enumerate(episodes):
        (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(table_of(ep, e, start, fps), root / f"data/chunk-000/episode_{e:06d}.parquet")
        write_mp4(root / f"videos/chunk-000/observation.images.top/episode_{e:06d}.mp4", ep["top"], fps)
        start += len(ep["action"])
    return root


def write_lerobot_v30(root, episodes, fps=10):
    """All episodes in one data file and one mp4, located through meta/episodes (from_timestamp)."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    info = {
        "codebase_version": "v3.0", "fps": fps, "chunks_size": 1000, "features": lerobot_features(episodes[0]),
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    lengths = [len(ep["action"]) for ep in episodes]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pq.write_table(pa.concat_tables([table_of(ep, e, s, fps) for e, (ep, s) in enumerate(zip(episodes, starts))]),
                   root / "data/chunk-000/file-000.parquet")
    write_mp4(root / "videos/observation.images.top/chunk-000/file-000.mp4", np.concatenate([ep["top"] for ep in episodes]), fps)
    pq.write_table(pa.table({
        "episode_index": list(range(len(episodes))), "length": lengths,
        "videos/observation.images.top/chunk_index": [0] * len(episodes),
        "videos/observation.images.top/file_index": [0] * len(episodes),
        "videos/observation.images.top/from_timestamp": [float(s) / fps for s in starts],
    }), root / "meta/episodes/chunk-000/file-000.parquet")
    return root


def write_zarr(root, episodes, zarr_format):
    g = zarr.open_group(str(root), mode="w", zarr_format=zarr_format)
    for key in episodes[0]:
        data = np.concatenate([ep[key] for ep in episodes])
        g.create_array(f"data/{key}", data=data, chunks=(4, *data.shape[1:]))
    g.create_array("meta/episode_ends", data=np.cumsum([len(ep["action"]) for ep in episodes]).astype(np.int64))
    return root


def assert_same(reader, episodes, keys):
    for i, ep in enumerate(episodes):
        got = get_episode(reader, i)
        assert sorted(got) == sorted(keys)
        for key in keys:
            want = ep["qpos"] if key in ("qpos", "state") and key not in ep else ep[key]
            assert got[key].dtype == want.dtype and np.array_equal(got[key], want), key


# ---------------------------------------------------------------------------------------------
# registration and detection


def test_core_registers_its_formats_through_register_components():
    assert {"zarr", "hdf5", "lerobot"} <= set(REGISTRY.names("dataset"))
    assert REGISTRY.owner("dataset", "hdf5") == "polx.core"


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_stores_of_both_formats_are_detected_and_read_exactly(tmp_path, zarr_format):
    eps = episodes_of([5, 3])
    reader = open_dataset(write_zarr(tmp_path / "d.zarr", eps, zarr_format), registry=REGISTRY)
    assert reader.format == "zarr" and reader.episode_ends.tolist() == [5, 8]
    assert_same(reader, eps, ["action", "qpos", "top"])


def test_an_unrecognised_path_names_it_and_every_format_tried(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match=r"'.*stuff' is in no format polx recognises; tried hdf5: .*lerobot: .*zarr: "):
        open_dataset(tmp_path / "stuff", registry=REGISTRY)
    with pytest.raises(DatasetError, match="unknown dataset format 'csv'.*available: hdf5, lerobot, zarr"):
        open_dataset(tmp_path / "stuff", "csv", registry=REGISTRY)


def test_a_hub_id_is_refused_never_downloaded():
    with pytest.raises(DatasetError, match="polx never downloads.*huggingface-cli download"):
        open_dataset("lerobot/pusht", registry=REGISTRY)


# ---------------------------------------------------------------------------------------------
# hdf5


def test_act_hdf5_directory_reads_exactly_in_episode_number_order(tmp_path):
    eps = episodes_of([4, 6, 2], cams=("r_vis", "top", "front"))
    root = write_act_dir(tmp_path / "act", eps)
    reader = open_dataset(root, registry=REGISTRY)
    assert reader.format == "hdf5" and reader.episode_ends.tolist() == [4, 10, 12]
    assert_same(reader, eps, ["action", "qpos", "r_vis", "top", "front"])
    info = info_dict(reader)
    assert info["cameras"] == {c: {"height": 6, "width": 8, "channels": 3} for c in ("front", "r_vis", "top")}


def test_hdf5_reader_reads_after_pickling_and_in_a_forked_process(tmp_path):
    """DataLoader workers: spawned ones get a pickled reader, forked ones inherit its HDF5 handles
    (not fork-safe); either way the reader reopens its files in the new process."""
    import multiprocessing
    import pickle

    eps = episodes_of([4, 6], cams=("top",))
    reader = open_dataset(write_act_dir(tmp_path / "act", eps), registry=REGISTRY)
    expected = np.concatenate([ep["top"] for ep in eps])[2:9]
    assert np.array_equal(pickle.loads(pickle.dumps(reader)).read("top", 2, 9), expected)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert np.array_equal(pool.apply(reader.read, ("top", 2, 9)), expected)
    assert np.array_equal(reader.read("top", 2, 9), expected)  # the parent's handles still work


def test_cached_frames_read_zarr_in_whole_chunks_each_once(tmp_path):
    from polx.data.replay_buffer import ReplayBuffer

    eps = episodes_of([30, 25], cams=("top",))
    root = write_zarr(tmp_path / "z.zarr", eps, 2)
    reader = open_dataset(root, registry=REGISTRY)
    chunk = ReplayBuffer.open(root).array_info("top")[2][0]
    reads = []
    read = reader.read
    reader.read = lambda key, a, b: reads.append((a, b)) or read(key, a, b)
    frames = CachedFrames(reader, "top", 1 << 30)
    assert frames.block == chunk
    full = np.concatenate([ep["top"] for ep in eps])
    for idx in np.random.default_rng(0).integers(0, len(full), size=(20, 2)):
        assert np.array_equal(frames[idx], full[idx])
    assert len(reads) == len(set(reads)) and all(a % chunk == 0 for a, _ in reads)


def test_hdf5_episodes_sort_numerically_not_by_name(tmp_path):
    eps = episodes_of([1] * 11)
    reader = open_dataset(write_act_dir(tmp_path / "act", eps), registry=REGISTRY)
    assert np.array_equal(get_episode(reader, 10)["action"], eps[10]["action"])  # episode_10 after episode_9


def test_corrupt_hdf5_names_the_file(tmp_path):
    root = write_act_dir(tmp_path / "act", episodes_of([3, 3]))
    (root / "episode_1.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 40)
    with pytest.raises(DatasetError, match=r"episode_1\.hdf5: not a readable HDF5 file"):
        open_dataset(root, registry=REGISTRY)


def test_hdf5_unequal_lengths_name_file_and_key(tmp_path):
    eps = episodes_of([3, 4])
    eps[1]["qpos"] = eps[1]["qpos"][:3]
    with pytest.raises(DatasetError, match=r"episode_1\.hdf5: /observations/qpos has 3 steps but /action has 4"):
        open_dataset(write_act_dir(tmp_path / "act", eps), registry=REGISTRY)


def test_hdf5_frames_of_different_sizes_name_file_and_key(tmp_path):
    eps = episodes_of([3, 3])
    eps[1]["top"] = np.zeros((3, 5, 8, 3), np.uint8)
    with pytest.raises(DatasetError, match=r"episode_1\.hdf5: /observations/images/top has per-step shape \(5, 8, 3\).*\(6, 8, 3\)"):
        open_dataset(write_act_dir(tmp_path / "act", eps), registry=REGISTRY)


def test_hdf5_without_action_or_with_different_keys_is_refused(tmp_path):
    root = write_act_dir(tmp_path / "a", episodes_of([2]))
    with h5py.File(root / "episode_1.hdf5", "w") as f:
        f["observations/qpos"] = np.zeros((2, 4))
    with pytest.raises(DatasetError, match=r"episode_1\.hdf5: no /action array"):
        open_dataset(root, registry=REGISTRY)


# ---------------------------------------------------------------------------------------------
# lerobot


def test_lerobot_v21_reads_videos_exactly_and_decodes_each_once_per_epoch(tmp_path):
    eps = episodes_of([5, 7])
    reader = open_dataset(write_lerobot_v21(tmp_path / "lr", eps), registry=REGISTRY)
    assert reader.format == "lerobot" and reader.episode_ends.tolist() == [5, 12]
    assert reader.keys() == ["action", "state", "top"]
    for _ in range(2):  # two epochs
        for i, ep in enumerate(eps):
            got = get_episode(reader, i)
            assert np.array_equal(got["top"], ep["top"]) and np.array_equal(got["state"], ep["qpos"])
            assert got["action"].dtype == np.float32 and np.array_equal(got["action"], ep["action"])
    assert reader._cache.decodes == 2  # one decode per episode video, not per epoch or per read


def test_lerobot_v30_finds_episodes_inside_one_shared_video(tmp_path):
    eps = episodes_of([4, 6, 3])
    reader = open_dataset(write_lerobot_v30(tmp_path / "lr3", eps), registry=REGISTRY)
    assert reader.episode_ends.tolist() == [4, 10, 13]
    for i, ep in enumerate(eps):
        assert np.array_equal(get_episode(reader, i)["top"], ep["top"])


def test_lerobot_frame_cache_is_bounded(tmp_path):
    from polx.data.lerobot_format import LeRobotFormat, LeRobotFormatConfig

    eps = episodes_of([5, 5, 5])
    reader = LeRobotFormat(LeRobotFormatConfig(frame_cache_mb=0)).open(write_lerobot_v21(tmp_path / "lr", eps))
    for _ in range(2):
        load_arrays(reader, ["top"])
    assert reader._cache.bytes == 0 and reader._cache.decodes == 6  # nothing kept: each read decodes again


def test_corrupt_parquet_and_mp4_name_the_file(tmp_path):
    root = write_lerobot_v21(tmp_path / "lr", episodes_of([3, 3]))
    mp4 = root / "videos/chunk-000/observation.images.top/episode_000001.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(DatasetError, match=r"episode_000001\.mp4: video of 'observation.images.top' could not be opened"):
        open_dataset(root, registry=REGISTRY)
    (root / "data/chunk-000/episode_000000.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match=r"episode_000000\.parquet: not a readable parquet file"):
        open_dataset(root, registry=REGISTRY)


def test_lerobot_video_of_another_size_names_file_and_key(tmp_path):
    eps = episodes_of([3, 3])
    root = write_lerobot_v21(tmp_path / "lr", eps)
    write_mp4(root / "videos/chunk-000/observation.images.top/episode_000001.mp4", np.zeros((3, 4, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"episode_000001\.mp4: frames of 'observation.images.top' are 4x8, but info.json says 6x8"):
        open_dataset(root, registry=REGISTRY)


def test_lerobot_missing_video_is_refused_not_fetched(tmp_path):
    root = write_lerobot_v21(tmp_path / "lr", episodes_of([3]))
    (root / "videos/chunk-000/observation.images.top/episode_000000.mp4").unlink()
    with pytest.raises(DatasetError, match="is not on disk \\(polx never downloads"):
        open_dataset(root, registry=REGISTRY)


# ---------------------------------------------------------------------------------------------
# lazy arrays and conversion


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_lazy_array_indexing_matches_numpy(data):
    eps = episodes_of([3, 5, 4])
    reader = _MemoryReader(eps)
    full = np.concatenate([ep["qpos"] for ep in eps])
    lazy = LazyArray(reader, "qpos")
    start = data.draw(st.integers(-14, 14))
    stop = data.draw(st.integers(-14, 14))
    idx = data.draw(st.lists(st.integers(-12, 11), max_size=6))
    assert np.array_equal(lazy[start:stop], full[start:stop])
    assert np.array_equal(lazy[np.asarray(idx, dtype=np.int64)], full[np.asarray(idx, dtype=np.int64)])
    i = data.draw(st.integers(-12, 11))
    assert np.array_equal(lazy[i], full[i]) and np.array_equal(lazy[i, 1:3], full[i, 1:3])
    assert np.array_equal(np.asarray(lazy), full)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_cached_frames_gather_like_numpy_and_stay_within_their_bound(data):
    eps = episodes_of([7, 9, 5])
    full = np.concatenate([ep["top"] for ep in eps])
    block, max_bytes = data.draw(st.integers(1, 8)), data.draw(st.integers(0, 3 * full[0].nbytes * 8))
    frames = CachedFrames(_MemoryReader(eps), "top", max_bytes, block=block)
    assert frames.shape == full.shape and frames.dtype == np.uint8 and len(frames) == len(full)
    for _ in range(3):
        idx = np.asarray(data.draw(st.lists(st.integers(0, len(full) - 1), min_size=1, max_size=8)))
        idx = idx.reshape(-1, 1) if data.draw(st.booleans()) else idx  # (B, To) as PolicyDataset gathers
        assert np.array_equal(frames[idx], full[idx])
        assert frames.bytes <= max_bytes
    assert np.array_equal(frames[2:11], full[2:11]) and np.array_equal(np.asarray(frames), full)


class _MemoryReader:
    """A reader over in-memory episodes (the protocol's four members), for LazyArray's property."""

    format, path = "memory", "memory"

    def __init__(self, eps):
        self.data = {k: np.concatenate([ep[k] for ep in eps]) for k in eps[0]}
        self.episode_ends = np.cumsum([len(ep["action"]) for ep in eps])

    def keys(self):
        return sorted(self.data)

    def array_info(self, key):
        return self.data[key].shape, self.data[key].dtype

    def read(self, key, start, stop):
        return self.data[key][start:stop]


step_arrays = st.fixed_dictionaries({
    "lengths": st.lists(st.integers(1, 5), min_size=1, max_size=3),
    "cam": st.sampled_from([(4, 5, 3), (3, 3, 1), (2, 6, 4)]),
    "low_dtype": st.sampled_from([np.float32, np.float64, np.int64]),
    "low_shape": st.sampled_from([(), (1,), (3,), (2, 2)]),
    "seed": st.integers(0, 2**16),
})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=step_arrays)
def test_convert_round_trips_every_array_exactly(tmp_path_factory, spec):
    rng = np.random.default_rng(spec["seed"])
    eps = []
    for n in spec["lengths"]:
        low = rng.normal(size=(n, *spec["low_shape"])) * 100
        eps.append({
            "action": rng.normal(size=(n, 2)).astype(np.float32),
            "extra": low.astype(spec["low_dtype"]),
            "cam": rng.integers(0, 256, size=(n, *spec["cam"]), dtype=np.uint8),
        })
    root = tmp_path_factory.mktemp("rt")
    src = write_zarr(root / "src.zarr", eps, 2)
    path = src
    for i, to in enumerate(["hdf5", "lerobot", "zarr", "lerobot", "hdf5"]):
        out = root / f"{i}_{to}"
        convert_dataset(path, out, to, registry=REGISTRY, progress=False)
        reader = open_dataset(out, registry=REGISTRY)
        assert reader.format == to
        assert_same(reader, eps, ["action", "extra", "cam"])
        path = out


def _numbered_frames(n, size, level):
    """Frames whose brightness steps by 16 per frame from ``level``, on a gentle gradient: a frame
    read back one step early or late is off by 16, far above the codec's error on such images."""
    h, w, c = size
    ramp = (np.arange(w)[None, :, None] * 2 + np.arange(h)[:, None, None]) % 24
    colour = np.array([0, 20, 40][:c])
    return np.stack([(level + 16 * t) % 150 + 20 + ramp + colour for t in range(n)]).astype(np.uint8)


video_specs = st.fixed_dictionaries({
    "lengths": st.lists(st.integers(1, 12), min_size=1, max_size=4),
    "size": st.sampled_from([(16, 16, 3), (15, 21, 3), (12, 10, 1)]),
    "seed": st.integers(0, 2**16),
})


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=video_specs)
def test_lerobot_video_keeps_every_array_and_each_frame_in_its_place(tmp_path_factory, spec):
    """Written as mp4 (lossy), every frame comes back at its own step of its own episode, close to
    what was written; every other array exactly. Even, odd and one-channel frame sizes."""
    rng = np.random.default_rng(spec["seed"])
    eps = [{
        "action": rng.normal(size=(n, 2)).astype(np.float32),
        "qpos": rng.normal(size=(n, 3)),
        "cam": _numbered_frames(n, spec["size"], level=int(rng.integers(0, 200))),
    } for n in spec["lengths"]]  # fmt: skip
    root = tmp_path_factory.mktemp("video")
    out = root / "lr"
    summary = convert_dataset(write_zarr(root / "src.zarr", eps, 2), out, "lerobot", registry=REGISTRY, progress=False, video=True)
    assert summary["video"] is True
    reader = open_dataset(out, registry=REGISTRY)
    assert reader.source("cam") == "observation.images.cam (video)"
    assert [p.name for p in out.glob("videos/**/*.mp4")] == ["file-000.mp4"]  # one file, every episode in it
    for i, ep in enumerate(eps):
        got = get_episode(reader, i)
        for key in ("action", "qpos"):
            assert got[key].dtype == ep[key].dtype and np.array_equal(got[key], ep[key]), key
        assert got["cam"].shape == ep["cam"].shape and got["cam"].dtype == np.uint8
        per_frame = np.abs(got["cam"].astype(int) - ep["cam"]).mean(axis=(1, 2, 3))
        assert per_frame.max() < 4, per_frame


def test_video_is_refused_for_a_format_without_it_before_anything_is_written(tmp_path):
    src = write_zarr(tmp_path / "src.zarr", episodes_of([3]), 2)
    with pytest.raises(UserInputError, match="--video: format 'hdf5' does not store video; formats that do: lerobot"):
        convert_dataset(src, tmp_path / "act", "hdf5", registry=REGISTRY, progress=False, video=True)
    floats = write_zarr(tmp_path / "floats.zarr", [{"action": np.ones((2, 1), np.float32), "img": np.ones((2, 4, 4, 3), np.float32)}], 2)
    with pytest.raises(UserInputError, match=r"--video: .* has no camera arrays .* img float32 \(4, 4, 3\)"):  # PushT's DP layout
        convert_dataset(floats, tmp_path / "lr", "lerobot", registry=REGISTRY, progress=False, video=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["floats.zarr", "src.zarr"]


def test_convert_refuses_to_overwrite_and_leaves_nothing_on_failure(tmp_path):
    src = write_zarr(tmp_path / "src.zarr", episodes_of([3]), 2)
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserInputError, match="already exists"):
        convert_dataset(src, tmp_path / "taken", "hdf5", registry=REGISTRY, progress=False)
    bad = write_zarr(tmp_path / "bad.zarr", [{"action": np.ones((2, 1), np.float32), "timestamp": np.ones(2)}], 2)
    with pytest.raises(DatasetError, match="bookkeeping"):
        convert_dataset(bad, tmp_path / "lr", "lerobot", registry=REGISTRY, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zarr", "src.zarr", "taken"]


def test_a_converted_hdf5_dataset_does_not_claim_to_be_simulated(tmp_path):
    out = tmp_path / "act"
    convert_dataset(write_zarr(tmp_path / "src.zarr", episodes_of([3, 2]), 2), out, "hdf5", registry=REGISTRY, progress=False)
    with h5py.File(out / "episode_0.hdf5", "r") as f:
        assert "sim" not in f.attrs


def _polx(*args, cwd):
    return subprocess.run([sys.executable, "-m", "polx", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_info_json_and_convert_in_a_real_process(tmp_path):
    write_act_dir(tmp_path / "act", episodes_of([3, 2], cams=("r_vis", "top", "front")))
    info = _polx("data", "info", "act", "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    parsed = json.loads(info.stdout)
    assert parsed["format"] == "hdf5" and parsed["episodes"] == 2 and sorted(parsed["cameras"]) == ["front", "r_vis", "top"]
    done = _polx("data", "convert", "act", "act.zarr", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["episodes"] == 2
    again = _polx("data", "convert", "act", "act.zarr", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    junk = _polx("data", "info", "nothing_here", cwd=tmp_path)
    assert junk.returncode == 2 and "does not exist" in junk.stderr
    video = _polx("data", "convert", "act", "act_lr", "--to", "lerobot", "--video", cwd=tmp_path)
    assert video.returncode == 0, video.stderr
    assert sorted(p.parent.parent.name for p in (tmp_path / "act_lr").glob("videos/*/*/*.mp4")) == [
        "observation.images.front", "observation.images.r_vis", "observation.images.top"
    ]
    assert sorted(json.loads(_polx("data", "info", "act_lr", "--json", cwd=tmp_path).stdout)["cameras"]) == ["front", "r_vis", "top"]
    no_video = _polx("data", "convert", "act", "act2", "--to", "hdf5", "--video", cwd=tmp_path)
    assert no_video.returncode == 2 and "does not store video" in no_video.stderr and not (tmp_path / "act2").exists()
    wrong = _polx("data", "convert", "act", "act.csv", "--to", "csv", cwd=tmp_path)
    assert wrong.returncode == 2 and "--to 'csv' is not a format polx can write; choose one of: hdf5, lerobot, zarr" in wrong.stderr
    assert not (tmp_path / "act.csv").exists()


def test_generate_in_an_unknown_format_is_refused_before_any_episode(tmp_path):
    from click.testing import CliRunner

    from polx import cli

    result = CliRunner().invoke(cli.main, ["data", "generate", "--env", "pusht", "--episodes", "1", "--out", str(tmp_path / "x"), "--format", "csv"])
    if "unknown env 'pusht'" in result.output:
        pytest.skip("needs the envs plugin")
    assert result.exit_code == 2 and "--format 'csv' is not a format polx can write" in result.output
    assert list(tmp_path.iterdir()) == []

"""ReplayBuffer: writing, reading back, the on-disk format, read-only opening, and bad stores."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from polx.data.replay_buffer import ReplayBuffer, describe
from polx.errors import DatasetError


def make_episodes(lengths: list[int], seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "img": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
            "state": rng.normal(size=(n, 5)).astype(np.float32),
            "action": rng.normal(size=(n, 2)).astype(np.float32),
        }
        for n in lengths
    ]


def write_buffer(path: Path, episodes: list[dict[str, np.ndarray]]) -> Path:
    with ReplayBuffer.writer(path) as rb:
        for ep in episodes:
            rb.add_episode(ep)
    return path


def snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under path with its mtime and contents."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def raw_store(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A zarr v2 store written with zarr directly (to build malformed buffers)."""
    root = zarr.open_group(path, mode="w-", zarr_format=2)
    for name, value in arrays.items():
        root.create_array(name, data=value)
    return path


def test_round_trip_episodes_and_arrays(tmp_path):
    episodes = make_episodes([5, 3, 7])
    rb = ReplayBuffer.open(write_buffer(tmp_path / "demo.zarr", episodes))
    assert rb.n_episodes == 3 and rb.n_steps == 15
    assert rb.episode_ends.dtype == np.int64 and rb.episode_ends.tolist() == [5, 8, 15]
    assert rb.keys() == ["action", "img", "state"]
    loaded = rb.load()
    for key in rb.keys():
        expected = np.concatenate([ep[key] for ep in episodes])
        assert isinstance(loaded[key], np.ndarray) and loaded[key].dtype == expected.dtype
        np.testing.assert_array_equal(loaded[key], expected)
    for i, ep in enumerate(episodes):
        got = rb.get_episode(i, keys=["action"])
        assert list(got) == ["action"]
        np.testing.assert_array_equal(got["action"], ep["action"])
    np.testing.assert_array_equal(rb.get_episode(-1)["img"], episodes[-1]["img"])
    assert list(rb.load(["state"])) == ["state"]
    with pytest.raises(IndexError):
        rb.get_episode(3)


def test_on_disk_format_is_zarr_v2_chunked_by_time_and_compressed(tmp_path):
    path = write_buffer(tmp_path / "demo.zarr", make_episodes([4, 4]))
    assert (path / ".zgroup").is_file() and not list(path.rglob("zarr.json"))
    for name in ("data/img", "data/action", "meta/episode_ends"):
        meta = json.loads((path / name / ".zarray").read_text())
        assert meta["zarr_format"] == 2
        assert meta["compressor"]["id"] == "blosc" and meta["compressor"]["cname"] == "zstd"
    img = json.loads((path / "data/img/.zarray").read_text())
    assert img["shape"] == [8, 8, 8, 3] and img["chunks"][1:] == [8, 8, 3] and img["dtype"] == "|u1"


def test_open_never_modifies_the_store(tmp_path):
    path = write_buffer(tmp_path / "demo.zarr", make_episodes([6, 2]))
    before = snapshot(path)
    rb = ReplayBuffer.open(path)
    rb.load()
    rb.get_episode(1)
    describe(rb)
    assert snapshot(path) == before
    with pytest.raises(DatasetError, match="read-only"):
        rb.add_episode(make_episodes([2])[0])
    assert snapshot(path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_open_works_on_a_read_only_store(tmp_path):
    path = write_buffer(tmp_path / "demo.zarr", make_episodes([3]))
    paths = [path, *path.rglob("*")]
    for p in paths:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        assert ReplayBuffer.open(path).load()["action"].shape == (3, 2)
    finally:
        for p in paths:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_writer_is_atomic_on_error(tmp_path):
    path = tmp_path / "demo.zarr"
    with pytest.raises(RuntimeError, match="boom"):
        with ReplayBuffer.writer(path) as rb:
            rb.add_episode(make_episodes([3])[0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # neither the store nor its temporary directory


def test_writer_refuses_existing_path_and_empty_buffer(tmp_path):
    path = write_buffer(tmp_path / "demo.zarr", make_episodes([3]))
    before = snapshot(path)
    with pytest.raises(DatasetError, match="already exists"):
        with ReplayBuffer.writer(path):
            pass
    assert snapshot(path) == before
    with pytest.raises(DatasetError, match="no episodes"):
        with ReplayBuffer.writer(tmp_path / "empty.zarr"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.zarr"]


def test_add_episode_rejects_inconsistent_episodes(tmp_path):
    with pytest.raises(ValueError):
        with ReplayBuffer.writer(tmp_path / "x.zarr") as rb:
            with pytest.raises(ValueError, match="common length"):
                rb.add_episode({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))})
            rb.add_episode({"a": np.zeros((3, 2), np.float32)})
            with pytest.raises(ValueError, match="keys"):
                rb.add_episode({"b": np.zeros((3, 2), np.float32)})
            with pytest.raises(ValueError, match="per-step shape"):
                rb.add_episode({"a": np.zeros((3, 4), np.float32)})
            with pytest.raises(ValueError, match="dtype"):
                rb.add_episode({"a": np.zeros((3, 2), np.float64)})
            rb.add_episode({"a": np.ones((2, 2), np.float32)})
            raise ValueError("leave nothing behind")
    assert list(tmp_path.iterdir()) == []


def test_describe_lists_counts_lengths_and_arrays(tmp_path):
    path = write_buffer(tmp_path / "demo.zarr", make_episodes([2, 4, 9]))
    text = describe(ReplayBuffer.open(path))
    assert str(path) in text
    assert "episodes: 3" in text and "steps: 15" in text
    assert "min 2, mean 5.0, max 9" in text
    assert "data/img" in text and "(15, 8, 8, 3)" in text and "uint8" in text
    assert "data/action" in text and "(15, 2)" in text and "float32" in text and "chunks" in text


# ---------------------------------------------------------------------------------------------
# bad stores: DatasetError naming the path, what is wrong, and what is expected


def test_missing_path(tmp_path):
    path = tmp_path / "nope.zarr"
    with pytest.raises(DatasetError, match="does not exist") as err:
        ReplayBuffer.open(path)
    assert str(path) in str(err.value) and "meta/episode_ends" in str(err.value)


def test_not_a_zarr_store(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="not a zarr store") as err:
        ReplayBuffer.open(tmp_path / "plain")
    assert str(tmp_path / "plain") in str(err.value)
    (tmp_path / "file.zarr").write_text("hello")
    with pytest.raises(DatasetError, match="is a file"):
        ReplayBuffer.open(tmp_path / "file.zarr")


def test_missing_episode_ends(tmp_path):
    path = raw_store(tmp_path / "x.zarr", {"data/action": np.zeros((4, 2))})
    with pytest.raises(DatasetError, match="no meta/episode_ends") as err:
        ReplayBuffer.open(path)
    assert str(path) in str(err.value)


def test_empty_buffer(tmp_path):
    path = raw_store(tmp_path / "x.zarr", {"data/action": np.zeros((0, 2)), "meta/episode_ends": np.zeros(0, np.int64)})
    with pytest.raises(DatasetError, match="empty") as err:
        ReplayBuffer.open(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("ends", [[3, 3, 6], [4, 2, 6], [0, 6], [-1, 6]])
def test_non_increasing_episode_ends(tmp_path, ends):
    path = raw_store(tmp_path / "x.zarr", {"data/action": np.zeros((6, 2)), "meta/episode_ends": np.array(ends)})
    with pytest.raises(DatasetError, match="not strictly increasing") as err:
        ReplayBuffer.open(path)
    assert str(path) in str(err.value)


def test_array_length_mismatch_names_key_and_both_lengths(tmp_path):
    path = raw_store(
        tmp_path / "x.zarr",
        {"data/action": np.zeros((6, 2)), "data/state": np.zeros((5, 3)), "meta/episode_ends": np.array([2, 6])},
    )
    with pytest.raises(DatasetError) as err:
        ReplayBuffer.open(path)
    message = str(err.value)
    assert str(path) in message and "data/state" in message and "5" in message and "6" in message


def test_no_data_arrays(tmp_path):
    path = raw_store(tmp_path / "x.zarr", {"meta/episode_ends": np.array([2, 6])})
    with pytest.raises(DatasetError, match="no arrays under data/"):
        ReplayBuffer.open(path)


def test_unknown_key_lists_available(tmp_path):
    rb = ReplayBuffer.open(write_buffer(tmp_path / "demo.zarr", make_episodes([3])))
    with pytest.raises(DatasetError, match="no data/agent_pos array; it has: action, img, state"):
        rb.load(["agent_pos"])


def test_polx_data_info_command(tmp_path):
    from polx.cli import main

    path = write_buffer(tmp_path / "demo.zarr", make_episodes([3, 4]))
    ok = CliRunner().invoke(main, ["data", "info", str(path)])
    assert ok.exit_code == 0, ok.output
    assert "episodes: 2" in ok.output and "steps: 7" in ok.output
    bad = CliRunner().invoke(main, ["data", "info", str(tmp_path / "missing.zarr")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_a_chunk_zarr_skipped_as_all_zero_reads_as_zeros_with_a_warning_but_a_missing_polx_chunk_is_damage(tmp_path):
    """zarr's default writer leaves out chunks that hold only the fill value: such a store (another
    tool's) opens, warns and reads its zeros. In a store polx wrote every chunk is on disk, so one
    that is gone means damage and is refused."""
    root = zarr.open_group(str(tmp_path / "theirs.zarr"), mode="w", zarr_format=2)
    extra = np.array([0, 0, 0, 0, 7], dtype=np.int64)  # the first chunk (4 steps) is all zeros
    root.create_array("data/extra", data=extra, chunks=(4,))
    root.create_array("data/action", data=np.ones((5, 2), np.float32), chunks=(4, 2))
    root.create_array("meta/episode_ends", data=np.array([2, 5], np.int64))
    assert root["data/extra"].nchunks_initialized == 1  # zarr really skipped it
    with pytest.warns(UserWarning, match=r"data/extra is missing 1 of its 2 chunk files.*harmless"):
        rb = ReplayBuffer.open(tmp_path / "theirs.zarr")
    assert rb.load(["extra"])["extra"].tolist() == extra.tolist()

    with ReplayBuffer.writer(tmp_path / "ours.zarr") as writer:
        writer.add_episode({"extra": np.zeros(5, np.int64), "action": np.zeros((5, 2), np.float32)})
    chunk = next(p for p in (tmp_path / "ours.zarr" / "data" / "extra").iterdir() if not p.name.startswith("."))
    chunk.unlink()
    with pytest.raises(DatasetError, match="data/extra is missing 1 of its 1 chunk files.*damaged"):
        ReplayBuffer.open(tmp_path / "ours.zarr")

"""Readers and writers that check what they read and say what went wrong: real HDF5, parquet and
zarr files in tmp_path, real processes and signals.

- an HDF5 episode whose bytes were overwritten is refused naming the file (never read as garbage);
  a gap in the episode numbering is named;
- a LeRobot info.json that leaves a data column out of its features, or whose features or fps are
  not usable, is refused naming the field;
- a conversion that runs out of space exits 1 naming the output, with nothing left behind;
- a hidden ``.partial`` directory left by a killed writer is removed by the next write of the same
  dataset, and one whose writer lives is left alone;
- SIGTERM during demo generation with workers leaves no process and no ``.partial`` behind.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polx.data.convert import convert_dataset
from polx.data.formats import open_dataset
from polx.errors import DatasetError
from polx.plugins import load_plugins

REGISTRY = load_plugins(entry_points=[]).registry
REPO = Path(__file__).resolve().parents[1]


def polx(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "polx", *args], capture_output=True, text=True, timeout=300, **kwargs)


def write_act(root: Path, n_episodes: int = 2, steps: int = 40, numbers=None, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    episodes = []
    for i in numbers if numbers is not None else range(n_episodes):
        ep = {"action": rng.normal(size=(steps, 3)).astype(np.float32), "qpos": rng.normal(size=(steps, 4))}
        with h5py.File(root / f"episode_{i}.hdf5", "w") as f:
            f["action"] = ep["action"]
            f["observations/qpos"] = ep["qpos"]
        episodes.append(ep)
    return episodes


# ---------------------------------------------------------------------------------------------
# HDF5


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), where=st.floats(0.0, 1.0))
def test_overwritten_hdf5_bytes_are_refused_naming_the_file_or_read_unchanged(tmp_path_factory, seed, where):
    root = tmp_path_factory.mktemp("act") / "d"
    episodes = write_act(root)
    damaged = root / "episode_1.hdf5"
    data = bytearray(damaged.read_bytes())
    length = len(data) // 3
    start = int(where * (len(data) - length))
    data[start : start + length] = np.random.default_rng(seed).bytes(length)
    damaged.write_bytes(bytes(data))
    try:
        reader = open_dataset(root, registry=REGISTRY)
        got = {key: reader.read(key, 40, 80) for key in ("action", "qpos")}
    except DatasetError as exc:
        assert str(exc).startswith(str(damaged))
        return
    for key, values in got.items():  # what is read at all is exactly what was written
        assert np.array_equal(values, episodes[1][key]), key


def test_the_drill_of_the_report_last_third_overwritten_is_refused_by_name(tmp_path):
    root = tmp_path / "d"
    write_act(root, n_episodes=12)
    damaged = root / "episode_7.hdf5"
    data = bytearray(damaged.read_bytes())
    data[-len(data) // 3 :] = np.random.default_rng(0).bytes(len(data) // 3)
    damaged.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="episode_7.hdf5"):
        convert_dataset(root, tmp_path / "out.zarr", "zarr", registry=REGISTRY, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_absurd_low_dim_values_are_refused_with_the_first_bad_step(tmp_path):
    root = tmp_path / "d"
    write_act(root, n_episodes=1)
    with h5py.File(root / "episode_0.hdf5", "r+") as f:
        f["action"][5, 1] = 1e30
    with pytest.raises(DatasetError, match=r"episode_0.hdf5: /action holds NaN, inf or values beyond .* from step 5 \(1 of 40"):
        open_dataset(root, registry=REGISTRY)


def test_a_gap_in_the_episode_numbering_is_named(tmp_path):
    root = tmp_path / "d"
    write_act(root, numbers=[0, 1, 2, 3, 5, 6, 9], steps=4)
    with pytest.warns(UserWarning, match=r"episode_4.hdf5, episode_7.hdf5, episode_8.hdf5 missing from the numbering; reading the 7"):
        reader = open_dataset(root, registry=REGISTRY)
    assert len(reader.episode_ends) == 7


# ---------------------------------------------------------------------------------------------
# LeRobot info.json against the parquet columns


def write_lerobot(root: Path, info_edit=None) -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    n = 5
    features = {
        "action": {"dtype": "float32", "shape": [2], "names": None},
        "observation.state": {"dtype": "float32", "shape": [3], "names": None},
        **{k: {"dtype": "int64", "shape": [1], "names": None} for k in ("frame_index", "episode_index", "index", "task_index")},
    }
    info = {"codebase_version": "v2.1", "fps": 10, "chunks_size": 1000, "features": features,
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"}
    if info_edit:
        info_edit(info)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(pa.table({
        "action": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(2 * n, np.float32)), 2),
        "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(3 * n, np.float32)), 3),
        "frame_index": pa.array(np.arange(n)), "episode_index": pa.array(np.zeros(n, np.int64)),
        "index": pa.array(np.arange(n)), "task_index": pa.array(np.zeros(n, np.int64)),
    }), root / "data/chunk-000/episode_000000.parquet")
    return root


def _drop_action(info):
    del info["features"]["action"]


def _null_features(info):
    info["features"] = None


def _fps(value):
    return lambda info: info.__setitem__("fps", value)


@pytest.mark.parametrize("edit, said", [
    (_drop_action, r"data column\(s\) 'action' are not in .*info.json's features; add each to features"),
    (_null_features, r"info.json: features is NoneType; expected a mapping"),
    (_fps(0), r"info.json: fps is 0; expected a positive number"),
    (_fps(-5), r"fps is -5"),
    (_fps("nan"), r"fps is 'nan'"),
])
def test_a_lerobot_info_json_that_does_not_fit_its_data_is_refused_naming_the_field(tmp_path, edit, said):
    with pytest.raises(DatasetError, match=said):
        open_dataset(write_lerobot(tmp_path / "lr", edit), registry=REGISTRY)
    assert open_dataset(write_lerobot(tmp_path / "ok"), registry=REGISTRY).keys() == ["action", "state"]


def test_the_cli_exits_2_on_a_bad_info_json_and_1_naming_the_output_on_a_full_disk(tmp_path):
    bad = polx("data", "info", str(write_lerobot(tmp_path / "lr", _null_features)))
    assert bad.returncode == 2 and "features is NoneType" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    src = tmp_path / "d"
    write_act(src, n_episodes=4, steps=2000)

    def small_files():  # the kernel refuses writes past 64 KiB: what a full disk does to a writer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    for to in ("zarr", "hdf5", "lerobot"):  # hdf5 once crashed the interpreter here (rc 139)
        out = tmp_path / f"out_{to}"
        full = polx("data", "convert", str(src), str(out), "--to", to, preexec_fn=small_files)
        assert full.returncode == 1, (to, full.returncode, full.stderr)
        assert f"cannot write {str(out)!r} as {to}" in full.stderr and "nothing was written" in full.stderr, full.stderr
        assert "Traceback" not in full.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "lr"]


# ---------------------------------------------------------------------------------------------
# leftovers of killed writers


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_partial_directory_of_a_dead_writer_is_removed_by_the_next_write_and_a_live_ones_kept(tmp_path, capsys):
    src = tmp_path / "d"
    write_act(src, n_episodes=2, steps=3)
    stale = tmp_path / f".out.zarr.partial-{dead_pid()}-0123456789ab"
    live = tmp_path / f".out.zarr.partial-{os.getppid()}-0123456789ab"
    other = tmp_path / f".other.zarr.partial-{dead_pid()}-0123456789ab"
    for path in (stale, live, other):
        (path / "data").mkdir(parents=True)
    convert_dataset(src, tmp_path / "out.zarr", "zarr", registry=REGISTRY, progress=False)
    assert not stale.exists() and live.exists() and other.exists()
    assert stale.name in capsys.readouterr().err


@pytest.mark.slow  # its data must be large enough to kill the writer midway
def test_a_sigkilled_convert_leaves_a_partial_that_the_next_convert_removes(tmp_path):
    src = tmp_path / "d"
    write_act(src, n_episodes=400, steps=2000)
    out = tmp_path / "out.zarr"
    child = subprocess.Popen([sys.executable, "-m", "polx", "data", "convert", str(src), str(out), "--to", "zarr"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.zarr.partial-*")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.kill()
    child.wait()
    left = list(tmp_path.glob(".out.zarr.partial-*"))
    if not left:
        pytest.skip("the conversion finished before it could be killed")
    again = polx("data", "convert", str(src), str(out), "--to", "zarr")
    assert again.returncode == 0, again.stderr
    assert not any(p.exists() for p in left) and "unfinished dataset write" in again.stderr


GENERATOR = '''
import sys, time
import numpy as np
from polx.data.cache import collect_demos

def slow_episode(seed):
    time.sleep(0.5)
    return {"action": np.zeros((3, 2), np.float32)}, True

if __name__ == "__main__":
    print("started", flush=True)
    collect_demos(sys.argv[1], 200, slow_episode, env="slow", workers=2, progress=False)
'''


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_sigterm_during_generation_with_workers_leaves_no_process_and_no_partial(tmp_path):
    import psutil

    (tmp_path / "slowgen.py").write_text(textwrap.dedent(GENERATOR))
    out = tmp_path / "demos.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(tmp_path / "slowgen.py"), str(out)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    children: list[int] = []
    while time.monotonic() < deadline and not (list(tmp_path.glob(".demos.zarr.partial-*/data")) and len(children) >= 2):
        time.sleep(0.1)
        children = sorted(set(children) | set(_children(parent.pid)))
    assert len(children) >= 2, "the workers never started"
    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 128 + signal.SIGTERM and "stopped by signal SIGTERM" in err, err
    time.sleep(0.5)
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"still running after SIGTERM: {alive}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slowgen.py"]


def test_staging_of_a_killed_generation_is_removed_by_the_next_and_a_live_ones_kept(tmp_path):
    import toy_plugin

    from polx.data.convert import generate_in_format

    dead, live = dead_pid(), os.getppid()
    left = [tmp_path / f".demos.generating-{dead}-0123456789ab.zarr", tmp_path / f"..demos.generating-{dead}-0123456789ab.zarr.partial-{dead}-0123456789ab"]
    kept = tmp_path / f".demos.generating-{live}-0123456789ab.zarr"
    for path in (*left, kept):
        (path / "data").mkdir(parents=True)
    adapter = toy_plugin.ToyReachAdapter(toy_plugin.ToyReachConfig(cache_dir=str(tmp_path / "cache")))
    generate_in_format(adapter, tmp_path / "demos", "hdf5", registry=REGISTRY, episodes=2, progress=False)
    assert not any(p.exists() for p in left) and kept.exists() and (tmp_path / "demos" / "episode_1.hdf5").is_file()

"""``polx sweep`` end to end: real ``polx train`` processes on the toy plugin, resumed sweeps skip
finished cells, the summary CSV and heatmap are written, bad grids are refused before any run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from polx.sweep import Cell, cells, parse_grid, parse_shard, train_command
from polx.errors import UserInputError

import toy_plugin  # noqa: E402


@pytest.fixture
def toy_env(tmp_path) -> dict:
    """Environment in which the toy plugin is an installed distribution (entry point ``toy``)."""
    return {**os.environ, **toy_plugin.installed_env(tmp_path)}


def sweep(env: dict, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    base = toy_plugin.toy_overrides(tmp_path / "cache", "train.max_steps=4", "train.val_every=0", "eval.rollout_every=0",
                                    "eval.n_test=2", "eval.n_train=0", "eval.n_vis=0", "eval.max_steps=8", "train.checkpoint_every=0")
    cmd = [sys.executable, "-m", "polx", "sweep", "--head", "toy_mlp", "--env", "toy_reach", "--out", str(tmp_path / "runs"),
           "--name", "grid", *args, *base]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def test_sweep_runs_the_grid_resumes_and_summarises(toy_env, tmp_path):
    done = sweep(toy_env, tmp_path, "--grid", "head.hidden=8,16", "--grid", "train.lr=0.001,0.003", "--parallel", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    root = tmp_path / "runs" / "sweeps" / "grid"
    rows = list(csv.DictReader(open(root / "summary.csv")))
    assert [(r["head.hidden"], r["train.lr"]) for r in rows] == [("8", "0.001"), ("8", "0.003"), ("16", "0.001"), ("16", "0.003")]
    assert all(r["status"] == "finished" and 0.0 <= float(r["test_mean_score"]) <= 1.0 for r in rows)
    for r in rows:  # each cell trained with its own values
        config = (Path(r["run_dir"]) / "config.yaml").read_text()
        assert f"hidden: {r['head.hidden']}" in config and f"lr: {r['train.lr']}" in config
    assert Image.open(root / "heatmap.png").size[0] > 100

    again = sweep(toy_env, tmp_path, "--grid", "head.hidden=8,16", "--grid", "train.lr=0.001,0.003", "--parallel", "2")
    assert again.returncode == 0 and "4 finished, running 0" in again.stdout


def test_bad_grid_key_fails_before_anything_is_written(toy_env, tmp_path):
    done = sweep(toy_env, tmp_path, "--grid", "head.hiden=8,16")
    assert done.returncode == 2
    assert "head.hiden: unknown key (did you mean head.hidden?)" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_a_cell_killed_before_its_first_checkpoint_starts_over(tmp_path):
    cell = cells({"a.b": ["1"]}, tmp_path)[0]
    cell.dir.mkdir()
    (cell.dir / "config.yaml").write_text("partial")  # what a run killed early leaves behind
    cmd = train_command(cell, ["--head", "h", "--env", "e"], [])
    assert "--run-dir" in cmd and not cell.dir.exists()
    (cell.dir / "checkpoints").mkdir(parents=True)
    (cell.dir / "checkpoints" / "latest.ckpt").write_bytes(b"x")
    assert train_command(cell, [], [])[4:6] == ["--resume", str(cell.dir)]


def test_grid_and_shard_parsing(tmp_path):
    grid = parse_grid(["a.b=1,2,3", "c.d=x"])
    assert grid == {"a.b": ["1", "2", "3"], "c.d": ["x"]}
    all_cells = cells(grid, tmp_path)
    assert len(all_cells) == 3 and isinstance(all_cells[0], Cell) and all_cells[0].overrides == ["a.b=1", "c.d=x"]
    assert len({c.dir for c in all_cells}) == 3
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(UserInputError):
            parse_shard(bad)
    with pytest.raises(UserInputError):
        parse_grid(["a.b="])


def hold_run_dir(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir``'s lock, as a running ``polx train`` does, until killed."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from polx.runlock import RunDirLock; "
                               "RunDirLock().acquire(sys.argv[1]).write_pid(); print('held', flush=True); time.sleep(600)",
                               str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_cell_another_process_is_writing_is_never_deleted(tmp_path):
    from polx.sweep import cell_status

    cell = cells({"a.b": ["1"]}, tmp_path)[0]
    cell.dir.mkdir()
    (cell.dir / "config.yaml").write_text("a run that has not checkpointed yet")
    holder = hold_run_dir(cell.dir)
    try:
        assert cell_status(cell) == "running"
        assert train_command(cell, ["--head", "h", "--env", "e"], []) is None
        assert (cell.dir / "config.yaml").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert cell_status(cell) == "new"  # the holder died: the kernel dropped its lock


@pytest.mark.slow
def test_sigterm_stops_the_sweeps_cells_and_a_second_sweep_is_refused(toy_env, tmp_path):
    import signal
    import time

    from polx.runlock import RUN_LOCK, run_dir_holder

    base = toy_plugin.toy_overrides(tmp_path / "cache", "train.max_steps=1000000", "train.val_every=0", "eval.rollout_every=0",
                                    "train.checkpoint_every=0")
    cmd = [sys.executable, "-m", "polx", "sweep", "--head", "toy_mlp", "--env", "toy_reach", "--out", str(tmp_path / "runs"),
           "--name", "long", "--grid", "head.hidden=8", *base]
    first = subprocess.Popen(cmd, env=toy_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cell = tmp_path / "runs" / "sweeps" / "long" / "head.hidden=8"
    deadline = time.monotonic() + 600
    while run_dir_holder(cell) is None:  # the cell's polx train has its run directory
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.2)
    trainer_pid = run_dir_holder(cell)
    second = subprocess.run(cmd, env=toy_env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 1 and "in use by another polx process" in second.stderr and f"PID {first.pid}" in second.stderr
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 1 and "sweep stopped by SIGTERM" in err and "Traceback" not in err, err
    with pytest.raises(ProcessLookupError):
        os.kill(trainer_pid, 0)  # the cell's process is gone, not an orphan
    assert not (cell / RUN_LOCK).exists() or run_dir_holder(cell) is None

"""``polx sweep``: a grid of ``polx train`` runs, K at a time, resumable, summarised.

Each grid cell trains in its own directory, ``<sweep>/<key=value,...>/``, as a separate
``polx train`` process (so a crash in one run never takes the sweep down). A cell whose run
wrote ``summary.json`` is finished and skipped on the next invocation; a cell with a checkpoint
but no summary is resumed. ``--shard I/N`` runs every N-th cell, which is how one grid is spread
over N machines sharing a filesystem; ``--summarize-only`` then collects the results.

A sweep never touches a cell another process is writing (its run directory's lock is held:
status ``running``), and one shard of one sweep runs in one process at a time (a lock file in
the sweep directory). SIGTERM or SIGINT stops the sweep's cells (they keep their last
checkpoints) and starts no more; the same command later resumes them.

With ``exec.backend=ray`` (``--backend ray``) each cell is a Ray task reserving
``exec.cpus_per_cell`` CPUs and ``exec.gpus_per_cell`` GPUs, which runs the same ``polx train``
process on whichever node has them (the run directories must be on a filesystem every node
sees); the cluster's resources, not ``--parallel``, pace the cells, and each cell's own rollouts
run in its own processes. A cell whose Ray worker dies is reported failed; the same command
resumes it from its last checkpoint.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

import attrs

from polx.errors import PolxError, UserInputError
from polx.runlock import FileLock, run_dir_holder


@attrs.define(kw_only=True)
class Cell:
    values: dict[str, Any]  # dotted key -> value (as typed on the command line)
    dir: Path

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.values.items()]

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.values.items())


def parse_grid(specs: Iterable[str]) -> dict[str, list[str]]:
    """``["head.n_emb=128,256", "head.n_layer=6,12"]`` -> ordered ``{key: [values]}``."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise UserInputError(f"bad --grid {spec!r}: expected KEY=V1,V2,... e.g. head.n_emb=128,256,384")
        if key in grid:
            raise UserInputError(f"--grid key {key!r} given twice")
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:  # two cells would share one run directory
            raise UserInputError(f"bad --grid {spec!r}: {', '.join(map(repr, twice))} given twice; each value of a key once")
        grid[key.strip()] = values
    if not grid:
        raise UserInputError("polx sweep needs at least one --grid KEY=V1,V2,...")
    return grid


def sweep_name(name: str) -> str:
    """``--name``: one plain directory name, so the sweep stays inside ``OUT/sweeps``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise UserInputError(f"--name {name!r}: expected a plain directory name (no '/', not '.' or '..', not hidden), e.g. n_emb_study")
    return name


def cells(grid: dict[str, list[str]], root: Path) -> list[Cell]:
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        label = ",".join(f"{k}={v}" for k, v in values.items())
        out.append(Cell(values=values, dir=root / label.replace("/", "_")))
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserInputError(f"bad --shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/3") from None
    if not (n >= 1 and 0 <= i < n):
        raise UserInputError(f"bad --shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/3")
    return i, n


def cell_status(cell: Cell) -> str:
    """``finished``, ``running`` (another process holds its run directory), ``resumable`` or ``new``."""
    if (cell.dir / "summary.json").is_file():
        return "finished"
    if run_dir_holder(cell.dir) is not None:
        return "running"
    if (cell.dir / "checkpoints" / "latest.ckpt").is_file():
        return "resumable"
    return "new"


def train_command(cell: Cell, base_args: list[str], overrides: list[str]) -> list[str] | None:
    """The ``polx train`` command for ``cell``; None when another process is running it."""
    cmd = [sys.executable, "-m", "polx", "train"]
    status = cell_status(cell)
    if status == "running":
        return None
    if status == "resumable":
        return cmd + ["--resume", str(cell.dir), *overrides, *cell.overrides]
    if cell.dir.exists():  # a run killed before its first checkpoint: nothing to resume, start over
        shutil.rmtree(cell.dir)
    return cmd + [*base_args, "--run-dir", str(cell.dir), *overrides, *cell.overrides]


def lock_shard(root: Path, index: int, count: int) -> FileLock:
    """One process per shard of a sweep; ``LockHeldError`` names the one already running it."""
    what = f"sweep {str(root)!r}" + (f" (shard {index}/{count})" if count > 1 else "")
    return FileLock().acquire(root / f".polx-sweep-{index}-of-{count}.lock", what)


class SweepStopped(PolxError):
    """SIGTERM reached the sweep: its running cells were stopped, none started after."""


def _die_with_parent() -> None:
    """In a cell's ``polx train`` started by a Ray task: SIGTERM when the task's worker dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_cell_process(args: list[str], log_path: str) -> int:
    """One cell as a Ray task: ``python -m polx train ARGS`` on the node that runs it, output appended
    to ``log_path``; returns its exit code. Cancelled (the sweep stopped): SIGTERM to the training,
    which keeps its last checkpoint, and the task ends once it has exited."""
    cmd = [sys.executable, "-m", "polx", "train", *args]
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        try:
            return proc.wait()
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


class _RayCells:
    """Cells as Ray tasks with the cell's resources (``exec.*``)."""

    def __init__(self, exec_config: Any):
        from polx.executor.ray_backend import connect

        self.ray = connect(exec_config.ray_address)
        self.task = self.ray.remote(run_cell_process).options(
            num_cpus=exec_config.cpus_per_cell, num_gpus=exec_config.gpus_per_cell, max_retries=0
        )

    def start(self, args: list[str], log_path: Path) -> Any:
        return self.task.remote([*args, "exec.backend=local"], str(log_path))  # a cell's own rollouts: its own processes

    def wait(self, ref: Any) -> tuple[int | None, str]:
        """(exit code, or None when the task did not finish: cancelled or its worker died; why)."""
        from ray.exceptions import RayError, TaskCancelledError

        try:
            return self.ray.get(ref), ""
        except TaskCancelledError:
            return None, "cancelled"
        except RayError as exc:
            return None, f"its Ray worker failed: {type(exc).__name__}"

    def stop(self, ref: Any) -> None:
        self.ray.cancel(ref)  # KeyboardInterrupt in the task: it stops its training (SIGTERM) and waits


def run_cells(
    todo: list[Cell], base_args: list[str], overrides: list[str], parallel: int, log_dir: Path, exec_config: Any = None
) -> dict[str, int]:
    """Run ``todo`` with at most ``parallel`` processes (or as Ray tasks: ``exec.backend=ray``); returns label -> exit code.

    A cell another process runs is skipped (not in the result). On SIGTERM or SIGINT (handled
    when called from the main thread) the running cells get SIGTERM, no new one starts, and the
    sweep raises ``SweepStopped`` (SIGTERM) or ``KeyboardInterrupt`` (SIGINT) once they are gone.
    A Ray cell whose task did not finish (its worker died) is reported failed, with exit code -1.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    guard = threading.Lock()
    running: set[subprocess.Popen] = set()
    on_ray = _RayCells(exec_config) if todo and exec_config is not None and exec_config.backend == "ray" else None
    tasks: set[Any] = set()

    def one(cell: Cell) -> tuple[str, int | None]:
        with guard:
            cmd = None if stopping.is_set() else train_command(cell, base_args, overrides)
            if cmd is None:
                if not stopping.is_set():
                    print(f"[sweep] skipped, another process is running it (PID {run_dir_holder(cell.dir)}): {cell.label}", flush=True)
                return cell.label, None
            if on_ray is not None:
                ref = on_ray.start(cmd[4:], log_dir / f"{cell.dir.name}.log")  # cmd: python -m polx train ARGS
                tasks.add(ref)
        if on_ray is not None:
            code, why = on_ray.wait(ref)
            with guard:
                tasks.discard(ref)
            code = -1 if code is None else code
            verdict = "done" if code == 0 else "stopped" if stopping.is_set() else f"FAILED ({why or f'exit {code}'})"
            print(f"[sweep] {verdict}: {cell.label}", flush=True)
            return cell.label, code
        with guard:
            log = open(log_dir / f"{cell.dir.name}.log", "a")
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            running.add(proc)
        try:
            code = proc.wait()
        finally:
            log.close()
            with guard:
                running.discard(proc)
        verdict = "done" if code == 0 else "stopped" if stopping.is_set() else f"FAILED (exit {code})"
        print(f"[sweep] {verdict}: {cell.label}", flush=True)
        return cell.label, code

    def stop(signum: int, frame: Any) -> None:
        stopping.set()
        with guard:  # no cell starts after this
            for proc in running:
                proc.send_signal(signal.SIGTERM)
            for ref in tasks:
                on_ray.stop(ref)
        raise KeyboardInterrupt if signum == signal.SIGINT else SweepStopped(
            f"sweep stopped by {signal.Signals(signum).name}: its running cells were stopped (each keeps its last "
            "checkpoint) and no new one started; run the same command again to continue"
        )

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    pool = ThreadPoolExecutor(max_workers=max(1, len(todo)) if on_ray is not None else parallel)  # Ray paces its cells
    try:
        results = dict(pool.map(one, todo))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        pool.shutdown(wait=True)  # after a signal: once the stopped cells' processes have exited
    return {label: code for label, code in results.items() if code is not None}


def read_metrics(cell: Cell) -> dict[str, float]:
    path = cell.dir / "summary.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        metrics = data.get("metrics", {}) if isinstance(data, dict) else None
        if not isinstance(metrics, dict):
            raise ValueError("no 'metrics' mapping")
    except (ValueError, OSError) as exc:  # one damaged file must not hide the other cells' results
        print(f"polx: warning: {path} could not be read ({exc}); cell {cell.label} is left out of the summary", file=sys.stderr)
        return {}
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def summarize(all_cells: list[Cell], grid: dict[str, list[str]], root: Path, metric: str) -> tuple[Path, Path | None]:
    """Write ``summary.csv`` (one row per cell) and ``heatmap.png`` of ``metric``."""
    rows = []
    metric_names: list[str] = []
    for cell in all_cells:
        m = read_metrics(cell)
        metric_names += [k for k in m if k not in metric_names]
        rows.append((cell, cell_status(cell), m))
    csv_path = root / "summary.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*grid, "status", *metric_names, "run_dir"])
        for cell, status, m in rows:
            w.writerow([*cell.values.values(), status, *(m.get(k, "") for k in metric_names), str(cell.dir)])
    png = _heatmap(rows, grid, root / "heatmap.png", metric)
    return csv_path, png


def _heatmap(rows: list, grid: dict[str, list[str]], path: Path, metric: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(grid)
    if not any(metric in m for _, _, m in rows):
        return None
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(grid[keys[-1]]), 1.4 + 0.9 * len(grid[keys[0]])))
    if len(keys) == 1:
        vals = [m.get(metric, np.nan) for _, _, m in rows]
        ax.bar(grid[keys[0]], vals, color="tab:blue")
        ax.set_xlabel(keys[0])
        ax.set_ylabel(metric)
    else:
        # rows: first key; columns: second key; further keys: best value over them
        ys, xs = grid[keys[0]], grid[keys[1]]
        table = np.full((len(ys), len(xs)), np.nan)
        for cell, _, m in rows:
            if metric in m:
                i, j = ys.index(cell.values[keys[0]]), xs.index(cell.values[keys[1]])
                table[i, j] = m[metric] if np.isnan(table[i, j]) else max(table[i, j], m[metric])
        im = ax.imshow(table, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(keys[1])
        ax.set_ylabel(keys[0])
        for i in range(len(ys)):
            for j in range(len(xs)):
                text = "-" if np.isnan(table[i, j]) else f"{table[i, j]:.3f}"
                ax.text(j, i, text, ha="center", va="center", color="white" if np.isnan(table[i, j]) or table[i, j] < np.nanmean(table) else "black")
        fig.colorbar(im, ax=ax, label=metric)
        if len(keys) > 2:
            ax.set_title(f"best over {', '.join(keys[2:])}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

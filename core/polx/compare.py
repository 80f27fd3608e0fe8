"""``polx compare RUN_DIR...``: the tables a study reports, from finished (or running) runs.

Each run is read from its directory alone: ``logs.json.txt``, ``config.yaml`` and, when there,
``summary.json``. Three tables, each as CSV (``OUT/<table>.csv``) and together as Markdown
(``OUT/compare.md``, also printed):

* ``val_loss``: the teacher-forced masked validation loss (fixed noise and times) at every step
  any run validated; a run that did not validate at a step has an empty cell;
* ``sample_mae``: the sampled masked action MAE per sampling step count (``eval.sample_steps``)
  at each run's last validation, with the per-group values and the group imbalance when logged;
* ``runtime``: steps, training time (training steps only), steps per second, peak memory, and
  the final ``test_mean_score`` when the run rolled out.

Runs are labelled by their directory name; the config keys whose values differ between the runs
(``head.action_expert_mode``, say) are listed beside each, so the table says what was varied.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import yaml

from polx.errors import UserInputError
from polx.plot import LOG_NAME, metric_series, read_log

MAE = re.compile(r"val_action_mae_(?:(?P<what>.+)_)?(?P<steps>\d+)step$")
EMPTY_WHY = {
    "val_loss": "no run validated (train.val_every)",
    "sample_mae": "no run logged sampled action MAE (eval.sample_steps)",
    "runtime": "no run logged a step",
}
IGNORED_KEYS = ("data.path", "train.init_from")  # paths differ between machines, not between designs


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def load_run(run_dir: Path) -> dict:
    """A run's name, flattened config and metric series; UserInputError when it is not a run directory."""
    log = run_dir / LOG_NAME
    if not log.is_file():
        raise UserInputError(f"{str(run_dir)!r} is not a polx run directory: it has no {LOG_NAME}")
    config_path = run_dir / "config.yaml"
    config = _flatten(yaml.safe_load(config_path.read_text())) if config_path.is_file() else {}
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return {"name": run_dir.name, "config": config, "series": metric_series(read_log(log)), "summary": summary}


def varied_keys(runs: list[dict]) -> list[str]:
    """Config keys whose value differs between the runs that have them (paths left out).

    A key only some runs have (the options of another head or env) is not a variation of its
    own: ``components.head`` differing already says it, so a table across heads lists the head
    and the options both runs share, not every option of each head beside a blank."""
    keys = sorted({k for run in runs for k in run["config"]})
    return [
        k for k in keys
        if k not in IGNORED_KEYS and len({json.dumps(run["config"][k]) for run in runs if k in run["config"]}) > 1
    ]


def _last(run: dict, metric: str) -> float | None:
    series = run["series"].get(metric)
    return series[1][-1] if series and series[1] else None


def tables(runs: list[dict]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """table name -> (header, rows); the first columns are the run and what was varied."""
    varied = varied_keys(runs)
    lead = lambda run: [run["name"], " ".join(f"{k}={run['config'][k]}" for k in varied if k in run["config"])]  # noqa: E731
    steps = sorted({s for run in runs for s in run["series"].get("val_loss", ([], []))[0]})
    loss_rows = []
    for run in runs:
        by_step = dict(zip(*run["series"].get("val_loss", ([], []))))
        loss_rows.append(lead(run) + [by_step.get(s) for s in steps])
    mae_columns = sorted(
        {m for run in runs for m in run["series"] if MAE.match(m)},
        key=lambda m: (int(MAE.match(m)["steps"]), MAE.match(m)["what"] or ""),
    )
    mae_rows = [lead(run) + [_last(run, m) for m in mae_columns] for run in runs]
    runtime_rows = []
    for run in runs:
        step_series = run["series"].get("train_time_s", ([], []))
        step = step_series[0][-1] if step_series[0] else run["summary"].get("global_step")
        seconds = step_series[1][-1] if step_series[1] else None
        peaks = run["series"].get("peak_memory_mb", ([], []))[1]
        peak = max(peaks) if peaks else None
        rate = step / seconds if step and seconds else None
        runtime_rows.append(lead(run) + [step, seconds, rate, peak, _last(run, "test_mean_score")])
    return {
        "val_loss": (["run", "varied"] + [f"step {s}" for s in steps], loss_rows),
        "sample_mae": (["run", "varied"] + [m.removeprefix("val_action_") for m in mae_columns], mae_rows),
        "runtime": (["run", "varied", "steps", "train_time_s", "steps_per_s", "peak_memory_mb", "test_mean_score"], runtime_rows),
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(name: str, header: list[str], rows: list[list[Any]]) -> str:
    lines = [f"### {name}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def compare_runs(run_dirs: list[Path], out: Path) -> str:
    """Write ``OUT/<table>.csv`` and ``OUT/compare.md``; returns the Markdown."""
    if not run_dirs:
        raise UserInputError("polx compare: name at least one run directory")
    runs = [load_run(Path(d)) for d in run_dirs]
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {str(out)!r} exists and is not a directory")
    built = tables(runs)
    # a table no run logged anything for (sample_mae without eval.sample_steps, val_loss without
    # validation) is left out and named, not printed as a header over blank rows
    empty = [name for name, (header, rows) in built.items() if not any(v is not None for row in rows for v in row[2:])]
    out.mkdir(parents=True, exist_ok=True)
    for name in empty:
        (out / f"{name}.csv").unlink(missing_ok=True)  # a stale table from an earlier compare into OUT
    for name, (header, rows) in built.items():
        if name in empty:
            continue
        with open(out / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([["" if v is None else v for v in row] for row in rows])
    text = "\n".join(markdown(name, *table) for name, table in built.items() if name not in empty)
    if empty:
        text += "\n" + "".join(f"(no {name} table: {EMPTY_WHY[name]})\n" for name in empty)
    (out / "compare.md").write_text(text)
    return text

"""``polx plot``: a run's training curves from ``logs.json.txt`` as one PNG.

One subplot per metric, x = ``global_step``. Uses matplotlib's ``Figure`` directly (no pyplot),
so it needs no display and leaves the global backend alone.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path

from polx.errors import UserInputError
from polx.jsonlog import LOG_NAME

#: the default figure, one panel per tuple; metrics in a panel share its axes (those the log has)
DEFAULT_PANELS = (("train_loss", "val_loss"), ("lr",), ("test_mean_score", "test_success_rate"))
DEFAULT_METRICS = tuple(m for panel in DEFAULT_PANELS for m in panel)


def read_log(path: Path) -> list[dict]:
    """The log's records; lines that are not JSON objects (the partial last line of a run still
    writing) are skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def metric_series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """metric -> (steps, values), sorted by step.

    A resumed run logs again the steps between its last checkpoint and the crash; the later
    value of a step wins, so the curve shows the run that continued.
    """
    by_metric: dict[str, dict[int, float]] = {}
    for record in records:
        step = record.get("global_step")
        if not _is_number(step):
            continue  # a record that cannot be placed on the x axis
        for key, value in record.items():
            if key != "global_step" and _is_number(value):
                by_metric.setdefault(key, {})[int(step)] = float(value)
    return {key: (sorted(points), [points[s] for s in sorted(points)]) for key, points in by_metric.items()}


def panels(requested: list[str] | None, available: list[str], log: Path) -> list[list[str]]:
    """The figure's panels: the default ones (losses together, lr, rollout scores together) with
    what the log has, or one panel per ``--metric``."""
    listing = ", ".join(available) or "none"
    if requested is None:
        chosen = [[m for m in panel if m in available] for panel in DEFAULT_PANELS]
        chosen = [panel for panel in chosen if panel]
        if not chosen:
            raise UserInputError(
                f"{str(log)!r} has none of the default metrics ({', '.join(DEFAULT_METRICS)}); "
                f"choose with --metric from: {listing}"
            )
        return chosen
    unknown = [m for m in requested if m not in available]
    if unknown:
        raise UserInputError(f"--metric {', '.join(map(repr, unknown))} not in {str(log)!r}; available: {listing}")
    return [[m] for m in dict.fromkeys(requested)]


def plot_run(run_dir: Path, metrics: list[str] | None = None, out: Path | None = None) -> Path:
    """Draw ``metrics`` (default: train and val loss, lr, test score and success rate, those present) of ``run_dir``.

    Writes ``out`` (default ``RUN_DIR/media/curves.png``) and returns its path.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserInputError(f"run directory {str(run_dir)!r} does not exist")
    log = run_dir / LOG_NAME
    if not log.is_file():
        raise UserInputError(f"{str(run_dir)!r} has no {LOG_NAME} (was it trained with --logger none?)")
    out = Path(out) if out is not None else run_dir / "media" / "curves.png"
    if out.suffix.lower() != ".png":
        raise UserInputError(f"--out {str(out)!r} must be a .png file")

    series = metric_series(read_log(log))
    if not series:
        raise UserInputError(f"{str(log)!r} has no records with a global_step yet")
    chosen = panels(metrics, sorted(series), log)

    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.4 * len(chosen) + 0.6), layout="constrained")
    axes = fig.subplots(len(chosen), 1, sharex=True, squeeze=False)[:, 0]
    for ax, names in zip(axes, chosen):
        finite = []
        for name in names:
            steps, values = series[name]
            # sparse metrics (rollout scores every few thousand steps) need markers to be seen
            ax.plot(steps, values, marker="o" if len(steps) <= 30 else None, markersize=3, linewidth=1.2, label=name)
            finite += [v for v in values if math.isfinite(v)]
        ax.set_ylabel(names[0] if len(names) == 1 else names[0].split("_")[-1])
        if len(names) > 1:
            ax.legend(loc="best", fontsize=8)
        ax.grid(True, alpha=0.3)
        if all(n.endswith("loss") for n in names) and finite and min(finite) > 0:
            ax.set_yscale("log")  # losses fall by orders of magnitude
    axes[-1].set_xlabel("global step")
    fig.suptitle(run_dir.resolve().name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    fig.savefig(tmp, dpi=100, format="png")
    os.replace(tmp, out)  # a reader (or a kill) never sees half a PNG
    return out

"""`polx plot`: training curves from a run's logs.json.txt as a PNG, and its user errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from click.testing import CliRunner
from PIL import Image

from polx.cli import main
from polx.errors import UserInputError
from polx.plot import DEFAULT_METRICS, DEFAULT_PANELS, metric_series, panels, plot_run


def write_log(run_dir, records, tail=""):
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (run_dir / "logs.json.txt").write_text(text)
    return run_dir


def training_records(steps=range(0, 1000, 50)):
    for s in steps:
        record = {"global_step": s, "epoch": s // 200, "train_loss": 1.0 / (1 + s / 100), "lr": 1e-4 * min(1.0, s / 200)}
        if s % 250 == 0:
            record["test_mean_score"] = s / 1000
        yield record


@pytest.fixture
def run_dir(tmp_path):
    # a run still writing: its last line is partial, and plot must read around it
    return write_log(tmp_path / "run", training_records(), tail='{"global_step": 10')


def assert_png(path, min_size=(400, 300)):
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1]
        assert sum(count > 0 for count in image.convert("L").histogram()) > 10  # something was drawn


def test_default_metrics_to_media_curves_png(run_dir):
    out = plot_run(run_dir)
    assert out == run_dir / "media" / "curves.png"
    assert_png(out, min_size=(600, 600))  # three stacked panels


def test_cli_writes_png_and_prints_its_path(run_dir, tmp_path):
    out = tmp_path / "elsewhere" / "lr.png"
    result = CliRunner().invoke(main, ["plot", str(run_dir), "--metric", "lr", "--metric", "epoch", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    assert_png(out)


def test_resumed_run_keeps_the_later_value_of_a_step():
    records = [
        {"global_step": 0, "train_loss": 3.0},
        {"global_step": 10, "train_loss": 2.0},
        {"global_step": 20, "train_loss": 9.0},  # logged, then the run crashed before checkpointing step 20
        {"global_step": 10, "train_loss": 2.0},  # resumed from the step-10 checkpoint
        {"global_step": 20, "train_loss": 1.0},
        {"epoch": 1},  # no global_step: cannot be placed, left out
    ]
    assert metric_series(records) == {"train_loss": ([0, 10, 20], [3.0, 2.0, 1.0])}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "val_los"], "--metric 'val_los' not in"),
        (["--metric", "val_los"], "available: epoch, lr, test_mean_score, train_loss"),
        (["--out", "curves.jpg"], "must be a .png file"),
    ],
)
def test_cli_bad_input_exits_2_with_a_clear_message(run_dir, args, message):
    result = CliRunner().invoke(main, ["plot", str(run_dir), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_run_dir_or_log_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "empty_run").mkdir()
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "empty_run")])
    assert result.exit_code == 2 and "has no logs.json.txt" in result.output


def test_no_default_metric_lists_what_the_log_has(tmp_path):
    run_dir = write_log(tmp_path / "run", [{"global_step": s, "grad_norm": 0.5, "epoch": 0} for s in range(3)])
    with pytest.raises(UserInputError, match=r"none of the default metrics .*choose with --metric from: epoch, grad_norm"):
        plot_run(run_dir)
    assert_png(plot_run(run_dir, metrics=["grad_norm"]))


@given(present=st.sets(st.sampled_from(DEFAULT_METRICS + ("epoch", "grad_norm"))))
def test_the_default_figure_draws_every_default_metric_the_log_has_once(present):
    """val_loss shares the loss panel with train_loss, the success rate the score panel; no empty panel."""
    available = sorted(present)
    assume(present & set(DEFAULT_METRICS))
    chosen = panels(None, available, Path("logs.json.txt"))
    drawn = [m for panel in chosen for m in panel]
    assert sorted(drawn) == sorted(present & set(DEFAULT_METRICS)) and all(chosen)
    assert [m for panel in DEFAULT_PANELS for m in panel if m in drawn] == drawn  # default order


def test_empty_log_is_a_user_error(tmp_path):
    run_dir = write_log(tmp_path / "run", [])
    with pytest.raises(UserInputError, match="no records"):
        plot_run(run_dir)

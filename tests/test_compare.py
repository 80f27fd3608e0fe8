"""``polx compare`` on two real tiny runs, and what each run directory keeps to be made again.

Two ``imf_attnres`` runs on the toy env (two action groups) that differ in
``head.action_expert_mode`` (``shared``, ``split_communicating``) validate twice each;
``polx compare`` (a real subprocess: it needs no plugin) writes the three CSV tables and the
Markdown with the validated steps, the sampled MAE per step count and group, runtime and peak
memory, and names the varied key.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import toy_plugin  # noqa: E402
from test_objective_contract import PLUGINS  # noqa: E402

from polx.compare import varied_keys  # noqa: E402
from polx.train.reproduce import command_script, git_diff  # noqa: E402

pytest.importorskip("polx_imf_attnres")
TINY = ["head.n_emb=16", "head.n_layer=1", "env.action_groups=true", "train.max_steps=4", "train.val_every=2", "eval.sample_steps=[1, 2]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("study")
    return [
        toy_plugin.train_head_on_toy(PLUGINS, root, root / mode, "imf_attnres", *TINY, f"head.action_expert_mode={mode}",
                             argv=["polx", "train", "--head", "imf_attnres", f"head.action_expert_mode={mode}"])
        for mode in ("shared", "split_communicating")
    ]  # fmt: skip


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_writes_the_three_tables_as_csv_and_markdown(runs, tmp_path):
    out = tmp_path / "tables"
    done = subprocess.run([sys.executable, "-m", "polx", "compare", *map(str, runs), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loss = _read(out / "val_loss.csv")
    assert [row["run"] for row in loss] == ["shared", "split_communicating"]
    assert loss[1]["varied"] == "head.action_expert_mode=split_communicating"
    assert all(float(row["step 2"]) > 0 and float(row["step 4"]) > 0 for row in loss)
    mae = _read(out / "sample_mae.csv")
    assert {"mae_1step", "mae_x_1step", "mae_y_2step", "mae_imbalance_2step"} <= set(mae[0])
    assert all(float(row["mae_2step"]) > 0 for row in mae)
    runtime = _read(out / "runtime.csv")
    assert all(row["steps"] == "4" and float(row["train_time_s"]) > 0 and float(row["peak_memory_mb"]) > 10 for row in runtime)
    text = (out / "compare.md").read_text()
    assert text.count("### ") == 3 and "| split_communicating | head.action_expert_mode=split_communicating |" in text
    assert text in done.stdout


def test_split_communicating_runs_log_how_much_attention_crosses_between_groups(runs):
    from polx.plot import metric_series, read_log

    series = metric_series(read_log(runs[1] / "logs.json.txt"))
    steps, shares = series["val_cross_group_attention"]
    assert steps == [2, 4] and all(0.05 < share < 0.95 for share in shares)
    assert "val_cross_group_attention" not in metric_series(read_log(runs[0] / "logs.json.txt"))


def test_compare_refuses_a_directory_that_is_not_a_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "polx", "compare", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "is not a polx run directory: it has no logs.json.txt" in done.stderr


def test_a_run_directory_keeps_its_packages_and_command(runs):
    requirements = (runs[0] / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("torch==") for line in requirements) and requirements == sorted(requirements, key=lambda line: line.split("==")[0].lower())
    script = (runs[1] / "command.sh").read_text()
    assert script.startswith("#!/bin/sh") and script.rstrip().endswith("polx train --head imf_attnres head.action_expert_mode=split_communicating")


def test_the_command_script_replays_the_command_with_its_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("POLX_DISABLE_PLUGINS", "wandb")
    script = tmp_path / "command.sh"
    script.write_text(command_script([sys.executable, "-c", "import os; print(os.environ['POLX_DISABLE_PLUGINS'], os.getcwd())"], tmp_path))
    monkeypatch.delenv("POLX_DISABLE_PLUGINS")
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, cwd="/")
    assert done.stdout.split() == ["wandb", str(tmp_path)]


def test_git_diff_is_kept_only_for_a_dirty_tree(tmp_path):
    git = lambda *args: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-qm", "a")
    assert git_diff(tmp_path) is None
    (tmp_path / "a.py").write_text("x = 2\n")
    assert "+x = 2" in git_diff(tmp_path)


def _write_run(root: Path, name: str, config: dict, records: list[dict]) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "logs.json.txt").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_across_heads_only_shared_keys_that_differ_are_varied_and_empty_tables_are_named(tmp_path):
    """An imf run beside a ddpm run: the head and the shared options that differ, not every option
    of each head beside a blank; no sample_mae was logged, so no empty sample_mae table."""
    logs = [{"global_step": 2, "val_loss": 0.5, "train_time_s": 1.0}]
    imf = _write_run(tmp_path, "imf", {"components": {"head": "imf_attnres"}, "head": {"n_emb": 96, "num_steps": 1}, "train": {"lr": 1e-3}}, logs)
    ddpm = _write_run(tmp_path, "ddpm", {"components": {"head": "ddpm_transformer"}, "head": {"n_emb": 96, "num_inference_steps": 10}, "train": {"lr": 1e-4}}, logs)
    out = tmp_path / "tables"
    (out).mkdir()
    (out / "sample_mae.csv").write_text("stale\n")
    done = subprocess.run([sys.executable, "-m", "polx", "compare", str(imf), str(ddpm), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [row["varied"] for row in _read(out / "val_loss.csv")] == [
        "components.head=imf_attnres train.lr=0.001", "components.head=ddpm_transformer train.lr=0.0001"]
    assert not (out / "sample_mae.csv").exists() and "(no sample_mae table: no run logged sampled action MAE" in done.stdout
    assert "### sample_mae" not in done.stdout and "### val_loss" in done.stdout


@given(configs=st.lists(st.dictionaries(st.sampled_from("abcde"), st.integers(0, 2), max_size=5), min_size=1, max_size=4))
def test_a_key_is_varied_exactly_when_two_runs_that_have_it_disagree(configs):
    runs = [{"name": str(i), "config": config, "series": {}, "summary": {}} for i, config in enumerate(configs)]
    varied = set(varied_keys(runs))
    for key in "abcde":
        values = {config[key] for config in configs if key in config}
        assert (key in varied) == (len(values) > 1)

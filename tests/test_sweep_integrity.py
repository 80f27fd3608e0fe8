"""``polx sweep`` keeps to its directory and to distinct cells: a ``--name`` that leaves
``OUT/sweeps`` and a grid that repeats a value are refused (exit 2, nothing written), and one
damaged cell ``summary.json`` is named while the other cells are still summarised."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.errors import UserInputError
from polx.sweep import cells, parse_grid, summarize, sweep_name

from test_sweep import toy_env  # noqa: E402,F401  (the fixture)


values = st.lists(st.sampled_from(["1", "2", "3", "0.1", "a", "b"]), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(st.lists(values, min_size=1, max_size=3))
def test_a_grid_is_accepted_exactly_when_its_cells_are_distinct(columns):
    specs = [f"k{i}.v={','.join(vals)}" for i, vals in enumerate(columns)]
    if any(len(set(vals)) < len(vals) for vals in columns):
        with pytest.raises(UserInputError, match=r"given twice; each value of a key once"):
            parse_grid(specs)
        return
    all_cells = cells(parse_grid(specs), Path("/sweep"))
    assert len({c.dir for c in all_cells}) == len(all_cells)
    assert all(c.dir.parent == Path("/sweep") for c in all_cells)


@pytest.mark.parametrize("name", ["../../x", "..", ".", "a/b", ".hidden", ""])
def test_a_name_that_leaves_the_sweeps_directory_is_refused(name):
    with pytest.raises(UserInputError, match="expected a plain directory name"):
        sweep_name(name)


def test_the_cli_refuses_an_escaping_name_and_a_repeated_value_writing_nothing(toy_env, tmp_path):
    base = [sys.executable, "-m", "polx", "sweep", "--head", "toy_mlp", "--env", "toy_reach", "--out", str(tmp_path / "runs")]
    for extra, said in ((["--name", "../../x", "--grid", "train.seed=1,2"], "--name '../../x': expected a plain directory name"),
                        (["--grid", "train.seed=1,1"], "'1' given twice")):
        done = subprocess.run([*base, *extra], env=toy_env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_one_damaged_cell_summary_is_named_and_the_others_still_summarised(tmp_path, capsys):
    grid = {"train.seed": ["1", "2", "3"]}
    good, bad, missing = cells(grid, tmp_path)
    for cell in (good, bad):
        cell.dir.mkdir()
    (good.dir / "summary.json").write_text(json.dumps({"status": "finished", "metrics": {"test_mean_score": 0.5}}))
    (bad.dir / "summary.json").write_text('{"status": "finished", "metr')  # a torn write
    csv_path, _ = summarize([good, bad, missing], grid, tmp_path, "test_mean_score")
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["test_mean_score"] for r in rows] == ["0.5", "", ""]
    assert f"{bad.dir / 'summary.json'} could not be read" in capsys.readouterr().err

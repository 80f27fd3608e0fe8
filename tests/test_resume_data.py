"""``--resume`` after ``data.path`` was edited in config.yaml says that the run now trains on other
data than its checkpoint did, naming both paths; an unedited resume says nothing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

import toy_plugin  # noqa: E402

from polx.plugins import load_plugins  # noqa: E402
from polx.runs import prepare_training  # noqa: E402
from polx.train.trainer import run_training  # noqa: E402


def test_a_resume_on_edited_data_path_warns_naming_both(tmp_path, capfd):
    plugins = load_plugins(entry_points=[], extra=[("toy", toy_plugin)])
    source = toy_plugin.ToyReachAdapter(toy_plugin.ToyReachConfig(cache_dir=str(tmp_path / "cache"))).default_dataset()
    for name in ("a.zarr", "b.zarr"):
        shutil.copytree(source, tmp_path / name)
    overrides = toy_plugin.toy_overrides(tmp_path / "cache", f"data.path={tmp_path / 'a.zarr'}", "train.max_steps=2", "train.val_every=0",
                                         "eval.rollout_every=0", "eval.at_end=false")
    run = run_training(prepare_training(plugins, head="toy_mlp", env="toy_reach", run_dir=tmp_path / "run", overrides=overrides, argv=["t"]))
    capfd.readouterr()
    prepare_training(plugins, head=None, env=None, resume_dir=run, overrides=["train.max_steps=4"])
    assert "warning" not in capfd.readouterr().err

    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["path"] = str(tmp_path / "b.zarr")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    plan = prepare_training(plugins, head=None, env=None, resume_dir=run, overrides=["train.max_steps=4"])
    err = capfd.readouterr().err
    assert plan.config.data.path == str(tmp_path / "b.zarr")
    assert f"on data.path={str(tmp_path / 'b.zarr')!r}, but its checkpoint was trained on data.path={str(tmp_path / 'a.zarr')!r}" in err

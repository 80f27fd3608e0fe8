"""``polx plugin new``: the generated distributions import, register, install and train.

The fast tests import the generated packages straight from the output directory. The slow one
does what a plugin author does: ``pip install`` the four distributions (offline: no
dependencies, no build isolation, into a target directory put on ``PYTHONPATH``), runs their own
tests, and trains with them through ``polx train`` in a subprocess.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from polx.cli import main
from polx.plugins import load_plugins
from polx.scaffold import KIND_NAMES, write_plugin

NAMES = {"head": "mlp_head", "objective": "flow", "env": "reach", "logger": "rows", "dataset": "npz_steps"}


def _import(root: Path, name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(root))
    return importlib.import_module(f"polx_{name}.plugin")


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_generated_files_import_and_register(kind, tmp_path, monkeypatch):
    name = NAMES[kind]
    result = CliRunner().invoke(main, ["plugin", "new", kind, name, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / f"polx-plugin-{name.replace('_', '-')}"
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", f"polx_{name}/__init__.py", f"polx_{name}/config.py",
        f"polx_{name}/plugin.py", f"polx_{name}/{kind}.py", f"tests/test_{name}.py",
    }
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["polx"] == {name: f"polx_{name}.plugin"}
    plugin = _import(root, name, monkeypatch)
    loaded = load_plugins(entry_points=[], extra=[(name, plugin)])
    assert loaded.info(name).status == "ok" and loaded.info(name).components == {kind: [name]}  # core adds its own (env offline)
    comp = loaded.registry.get(kind, name)
    assert comp.help and comp.config_cls()  # a help line, and every option has a default
    importlib.import_module(f"polx_{name}.{kind}")  # the factory's module imports
    # the generated test holds the component to polx.testing's contract for its kind, and passes
    spec = importlib.util.spec_from_file_location(f"generated_test_{name}", root / "tests" / f"test_{name}.py")
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    contract = next(getattr(generated, n) for n in dir(generated) if n.startswith("test_keeps_the_polx_"))
    contract(tmp_path / "contract") if "tmp_path" in contract.__code__.co_varnames else contract()
    for mod in [m for m in sys.modules if m.startswith(f"polx_{name}")]:
        monkeypatch.delitem(sys.modules, mod)


def test_bad_names_and_existing_directories_exit_2_and_write_nothing(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["plugin", "new", "head", "My-Head", "--out", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "name 'My-Head'" in bad.output and not (tmp_path / "a").exists()
    assert runner.invoke(main, ["plugin", "new", "sampler", "x", "--out", str(tmp_path)]).exit_code == 2
    assert runner.invoke(main, ["plugin", "new", "logger", "rows", "--out", str(tmp_path)]).exit_code == 0
    again = runner.invoke(main, ["plugin", "new", "logger", "rows", "--out", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output


def _run(cmd: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(1800)  # four pip installs and two trainings; minutes on a busy machine
def test_generated_plugins_install_with_pip_pass_their_tests_and_train(tmp_path):
    roots = [write_plugin(kind, NAMES[kind], tmp_path / "src") for kind in KIND_NAMES]
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), *map(str, roots)], dict(os.environ), tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site), "POLX_CACHE_DIR": str(tmp_path / "cache"), "POLX_STRICT_PLUGINS": "1"}
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[str(r / "tests") for r in roots]], env, tmp_path)
    small = ["train.max_steps=6", "train.batch_size=8", "train.warmup_steps=2", "train.log_every=2", "train.val_every=0",
             "train.checkpoint_every=0", "train.progress=false", "eval.rollout_every=0", "eval.n_test=2", "eval.n_train=0",
             "eval.n_vis=1", "eval.max_steps=12", "env.n_demos=8"]
    # the generated head with ddpm, on the generated env, logging through the generated logger
    _run([sys.executable, "-m", "polx", "train", "--head", "mlp_head", "--env", "reach", "--logger", "rows", "--logger", "none",
          "--run-dir", str(tmp_path / "run_head"), *small, "head.hidden=32", "objective.num_inference_steps=4"], env, tmp_path)
    rows = list(csv.reader((tmp_path / "run_head" / "rows.csv").open()))
    keys = {key for _, key, _ in rows[1:]}
    assert {"train_loss", "test_mean_score", "test/trajectory_0"} <= keys
    assert Path(next(v for _, k, v in rows[1:] if k == "test/trajectory_0")).is_file()
    # the generated objective, with the shipped head that it names
    _run([sys.executable, "-m", "polx", "train", "--head", "ddpm_transformer", "--objective", "flow", "--env", "reach",
          "--run-dir", str(tmp_path / "run_objective"), *small, "head.n_emb=16", "head.n_layer=1", "head.n_head=2", "objective.num_steps=2"], env, tmp_path)
    assert (tmp_path / "run_objective" / "summary.json").is_file()

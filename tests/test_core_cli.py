"""Plugin manager and command line, through the real entry-point path.

Fake plugins here are real distributions: a module plus a ``.dist-info`` with ``entry_points.txt``
on ``sys.path``, so ``importlib.metadata`` finds them exactly as it finds an installed plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from polx.cli import main
from polx.errors import PluginLoadError, UnknownComponentError
from polx.plugins import load_plugins

FAKE_COMPONENTS = '''
from attrs import define, field
from polx import hookimpl
from polx.config import positive

@define(frozen=True, kw_only=True)
class HeadConfig:
    n_emb: int = field(default=32, validator=positive)

@define(frozen=True, kw_only=True)
class EnvConfig:
    obs_type: str = "state"

@define(frozen=True, kw_only=True)
class ObjectiveConfig:
    steps: int = 1

def build_head(config, spec):  # a head as polx plugins list checks it: a module with forward, spec, get_optim_groups
    import torch

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.spec, self.net = spec, torch.nn.Linear(spec.action_dim, spec.action_dim)

        def forward(self, sample, t, cond):
            return self.net(sample)

        def get_optim_groups(self, weight_decay):
            return [{{"params": list(self.parameters()), "weight_decay": weight_decay}}]

    return Head()

@hookimpl
def register_components(register):
    register("head", "{head}", HeadConfig, __name__ + ":build_head", help="a fake head", default_objective="{objective}")
    register("env", "{env}", EnvConfig, "math:sqrt", help="a fake env", preset={{"eval": {{"max_steps": 77}}}})
    register("objective", "{objective}", ObjectiveConfig, "math:sqrt", help="a fake objective")
'''


@attrs.define(frozen=True, kw_only=True)
class HeadlessCfg:
    """An option-less config class for registry tests."""


def make_dist(root: Path, name: str, source: str, version: str = "1.2.3") -> None:
    """Write module ``<name>_mod`` and distribution ``<name>`` whose ``polx`` entry point names it."""
    (root / f"{name}_mod.py").write_text(textwrap.dedent(source))
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[polx]\n{name} = {name}_mod\n")


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """A site dir with a working fake plugin (head 'fakehead', env 'fakeenv') on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "fakeplug", FAKE_COMPONENTS.format(head="fakehead", env="fakeenv", objective="fakeobj"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("POLX_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("POLX_STRICT_PLUGINS", raising=False)
    return site


def test_broken_plugin_is_recorded_and_others_keep_working(fake_env):
    make_dist(fake_env, "brokenplug", "raise RuntimeError('boom at import')\n", version="0.0.9")
    loaded = load_plugins()
    broken = loaded.info("brokenplug")
    assert broken.status == "broken" and "boom at import" in broken.error and broken.version == "0.0.9"
    assert loaded.info("fakeplug").status == "ok"
    assert "fakehead" in loaded.registry.names("head")


def test_strict_plugins_reraises_with_the_plugin_name(fake_env, monkeypatch):
    make_dist(fake_env, "brokenplug", "raise RuntimeError('boom at import')\n")
    monkeypatch.setenv("POLX_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="brokenplug.*boom at import"):
        load_plugins()


def test_register_components_failure_marks_only_that_plugin(fake_env):
    make_dist(
        fake_env,
        "badreg",
        """
        from polx import hookimpl
        @hookimpl
        def register_components(register):
            register("env", "half", object, "math:sqrt")
        """,
    )
    loaded = load_plugins()
    assert loaded.info("badreg").status == "broken"
    assert "attrs class" in loaded.info("badreg").error
    assert "fakeenv" in loaded.registry.names("env")


def test_a_duplicate_name_marks_the_newcomer_broken_and_keeps_the_first_owner(fake_env):
    # "zdupplug" loads after "fakeplug" (entry points load in name order) and re-registers fakeenv
    make_dist(fake_env, "zdupplug", FAKE_COMPONENTS.format(head="otherhead", env="fakeenv", objective="otherobj"), version="2.0")
    loaded = load_plugins()
    dup = loaded.info("zdupplug")
    assert dup.status == "broken" and loaded.info("fakeplug").status == "ok"
    assert loaded.registry.get("env", "fakeenv").plugin == "fakeplug"
    assert "otherhead" not in loaded.registry.names("head")  # all or none of a plugin's components
    for part in ("'fakeplug' (fakeplug 1.2.3)", "'zdupplug' (zdupplug 2.0)", "POLX_DISABLE_PLUGINS=zdupplug"):
        assert part in dup.error
    assert not loaded.pm.has_plugin("zdupplug")  # its hooks are unregistered too
    assert loaded.broken() == {"zdupplug": {"distribution": "zdupplug", "version": "2.0", "error": dup.error}}  # for manifests
    result = CliRunner().invoke(main, ["plugins", "list"])
    assert result.exit_code == 0 and "zdupplug" in result.output and "broken" in result.output


def test_a_duplicate_name_under_strict_plugins_is_an_error(fake_env, monkeypatch):
    make_dist(fake_env, "zdupplug", FAKE_COMPONENTS.format(head="otherhead", env="fakeenv", objective="otherobj"))
    monkeypatch.setenv("POLX_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="fakeenv.*fakeplug.*zdupplug"):
        load_plugins()


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
        ("print('hello from the plugin')\n", "wrote to stdout ('hello from the plugin')"),
        (
            "from polx import hookimpl\n@hookimpl\ndef register_components(register):\n    raise SystemExit(0)\n",
            "register_components: RuntimeError: called sys.exit(0)",
        ),
        (
            "from polx import hookimpl\n@hookimpl\ndef register_components(register):\n    print('registering!')\n",
            "register_components wrote to stdout ('registering!')",
        ),
    ],
    ids=["exit-at-import", "print-at-import", "exit-in-register", "print-in-register"],
)
def test_a_plugin_cannot_end_or_pollute_a_command(fake_env, source, expected):
    make_dist(fake_env, "rudeplug", source)
    code = "import json, sys; from polx.cli import main; main(['plugins', 'list', '--json'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(fake_env)})
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}  # stdout is JSON only: nothing leaked in
    assert rows["rudeplug"]["status"] == "broken" and expected in rows["rudeplug"]["error"]
    assert rows["fakeplug"]["status"] == "ok"


BROKEN_AFTER_REGISTERING = """
from attrs import define
from polx import hookimpl

@define(frozen=True, kw_only=True)
class Cfg:
    pass

@hookimpl
def register_components(register):
    register("head", "mlp", Cfg, "math:sqrt")
    raise ImportError("No module named 'polx_mlp.heads'")
"""


def test_unknown_component_names_the_broken_plugin_that_provides_it(fake_env, tmp_path):
    make_dist(fake_env, "mlpplug", BROKEN_AFTER_REGISTERING, version="0.3")
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--head", "mlp", "--env", "fakeenv", "--out", str(out)])
    assert result.exit_code == 2
    assert "unknown head 'mlp' (plugin 'mlpplug' (mlpplug 0.3) that provides it is broken: register_components: ImportError" in result.stderr
    assert "warning: plugin 'mlpplug' (mlpplug 0.3) is broken and was not loaded" in result.stderr  # the start-up warning
    assert not out.exists()


def test_unknown_component_mentions_plugins_that_failed_to_import(fake_env):
    make_dist(fake_env, "brokenplug", "raise RuntimeError('boom at import')\n")
    with pytest.raises(UnknownComponentError, match=r"unknown head 'nope' \(these plugins failed to load and may provide it: 'brokenplug'.*boom at import\); available: .*fakehead"):
        load_plugins().registry.get("head", "nope")


def test_plugins_list_shows_each_components_help(fake_env):
    result = CliRunner().invoke(main, ["plugins", "list"])
    assert result.exit_code == 0
    lines = result.output.split("components:", 1)[1].splitlines()
    assert any(line.split() == ["head", "fakehead", "a", "fake", "head", "[fakeplug]"] for line in lines), result.output
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(main, ["plugins", "list", "--json"]).output)}
    assert rows["fakeplug"]["help"]["env"] == {"fakeenv": "a fake env"}


def test_disable_plugins_skips_by_name(fake_env, monkeypatch):
    monkeypatch.setenv("POLX_DISABLE_PLUGINS", "fakeplug, loggers")
    loaded = load_plugins()
    assert loaded.info("fakeplug").status == "disabled"
    assert "fakehead" not in loaded.registry.names("head")


def test_plugins_list_table_and_json(fake_env):
    make_dist(fake_env, "brokenplug", "raise RuntimeError('boom at import')\n")
    runner = CliRunner()
    table = runner.invoke(main, ["plugins", "list"])
    assert table.exit_code == 0, table.output
    assert "fakeplug" in table.output and "head: fakehead" in table.output
    assert "broken: RuntimeError: boom at import" in table.output
    as_json = runner.invoke(main, ["plugins", "list", "--json"])
    rows = json.loads(as_json.output)  # JSON only: the whole output parses
    by_name = {r["name"]: r for r in rows}
    assert by_name["fakeplug"]["components"]["env"] == ["fakeenv"]
    assert by_name["fakeplug"]["version"] == "1.2.3"
    assert "register_components" in by_name["fakeplug"]["hooks"]
    assert by_name["brokenplug"]["status"] == "broken"


def test_core_runs_without_plugins_and_without_torch(tmp_path):
    """Without plugins nothing imports torch; with them, only commands that check or build components do."""
    code = textwrap.dedent(
        """
        import sys
        from click.testing import CliRunner
        from polx.cli import main
        r = CliRunner()
        for args in (["--help"], ["plugins", "list"], ["plugins", "list", "--json"], ["train", "--help"]):
            out = r.invoke(main, args)
            assert out.exit_code == 0, (args, out.output)
        print("torch" in sys.modules)
        """
    )
    env = {**os.environ, "POLX_DISABLE_PLUGINS": "*"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "torch imported with POLX_DISABLE_PLUGINS=*"
    # with the shipped plugins, help stays torch-free; plugins list imports their factories to check them
    help_only = code.replace('["plugins", "list"], ["plugins", "list", "--json"], ', "")
    done = subprocess.run([sys.executable, "-c", help_only], env={**os.environ, "POLX_DISABLE_PLUGINS": ""}, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "torch imported by --help with the shipped plugins"


def test_unknown_head_exits_2_and_lists_available(fake_env, tmp_path):
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--head", "nope", "--env", "fakeenv", "--out", str(out)])
    assert result.exit_code == 2
    assert "unknown head 'nope'; available:" in result.output and "fakehead" in result.output
    assert not out.exists()


def test_missing_head_flag_is_a_usage_error(fake_env):
    result = CliRunner().invoke(main, ["train", "--env", "fakeenv"])
    assert result.exit_code == 2 and "missing --head" in result.output


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.max_stepz=10", "train.max_stepz: unknown key (did you mean train.max_steps?)"),
        ("head.n_emb=abc", "head.n_emb: expected int, got 'abc'"),
        ("head.n_emb=-4", "head.n_emb: must be > 0, got -4"),
        ("train.device=gpu", "train.device: must be auto, cpu, cuda or cuda:N; got 'gpu'"),
        ("not-an-override", "expected KEY=VALUE"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(fake_env, tmp_path, override, expected):
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--head", "fakehead", "--env", "fakeenv", "--out", str(out), override])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not out.exists()


def test_missing_dataset_exits_2(fake_env, tmp_path):
    result = CliRunner().invoke(
        main, ["train", "--head", "fakehead", "--env", "fakeenv", "--dataset", str(tmp_path / "nope.zarr"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "nope.zarr" in result.output and "does not exist" in result.output


def test_print_config_shows_resolved_layers(fake_env, tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("train:\n  batch_size: 8\nhead:\n  n_emb: 48\n")
    result = CliRunner().invoke(
        main,
        ["train", "--head", "fakehead", "--env", "fakeenv", "--config", str(cfg), "--print-config", "head.n_emb=64", "--logger", "none"],
    )
    assert result.exit_code == 0, result.output
    import yaml

    resolved = yaml.safe_load(result.output)
    assert resolved["components"] == {"head": "fakehead", "env": "fakeenv", "objective": "fakeobj", "loggers": []}
    assert resolved["head"]["n_emb"] == 64  # override beats file
    assert resolved["train"]["batch_size"] == 8  # file beats default
    assert resolved["eval"]["max_steps"] == 77  # env preset beats default


def test_runtime_failure_exits_1_without_traceback(fake_env, tmp_path):
    # A data generate whose factory is math.sqrt fails inside the plugin: a runtime failure.
    result = CliRunner().invoke(main, ["data", "generate", "--env", "fakeenv", "--episodes", "1", "--out", str(tmp_path / "d.zarr")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "Traceback" not in result.output


def test_a_head_and_an_objective_that_do_not_pair_exit_2_before_any_directory(tmp_path):
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--head", "ddpm_transformer", "--env", "pusht", "--objective", "imf", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "head 'ddpm_transformer' does not support objective 'imf'" in result.output and "--objective ddpm" in result.output
    assert not out.exists()


def test_pairing_is_declared_by_the_head_or_by_the_objective():
    from polx.errors import UserInputError
    from polx.plugins import Registry, check_pairing

    reg = Registry()
    reg.register("head", "h", HeadlessCfg, "math:sqrt", plugin="p", default_objective="a", objectives=["a"])
    reg.register("head", "free", HeadlessCfg, "math:sqrt", plugin="p")
    reg.register("objective", "a", HeadlessCfg, "math:sqrt", plugin="p")
    reg.register("objective", "b", HeadlessCfg, "math:sqrt", plugin="p", heads=["h"])
    reg.register("objective", "c", HeadlessCfg, "math:sqrt", plugin="p", heads=["other"])
    get = reg.get
    for head, objective in [("h", "a"), ("h", "b"), ("free", "a")]:
        check_pairing(get("head", head), get("objective", objective))  # listed on one side, or on neither
    with pytest.raises(UserInputError, match="head 'free' does not support objective 'c'.*supports the heads other"):
        check_pairing(get("head", "free"), get("objective", "c"))
    with pytest.raises(ValueError, match="default_objective 'z', not in its objectives"):
        reg.register("head", "bad", HeadlessCfg, "math:sqrt", plugin="p", default_objective="z", objectives=["a"])



def test_manifest_names_broken_plugins(fake_env):
    from polx.base.run_dir import manifest

    make_dist(fake_env, "brokenplug", "raise RuntimeError('boom at import')\n", version="0.0.9")
    data = manifest(load_plugins(), ["polx", "train"], {})
    assert data["broken_plugins"]["brokenplug"]["version"] == "0.0.9"
    assert "boom at import" in data["broken_plugins"]["brokenplug"]["error"]
    assert "fakeplug" not in data["broken_plugins"]

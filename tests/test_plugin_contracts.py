"""The plugin author's door: name clashes, contracts checked at load and before a run, dataset formats.

Third-party plugins here are real distributions: a module plus a ``.dist-info`` with
``entry_points.txt`` in a directory put on ``sys.path``, so ``importlib.metadata`` finds them
next to polx's own installed plugins exactly as it finds an installed plugin.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from polx.cli import main
from polx.config import resolve_config
from polx.errors import DatasetError, PluginLoadError
from polx.plugins import load_plugins
from polx.testing import ContractError, check_objective

HEAD = '''
from attrs import define
from polx import hookimpl


@define(frozen=True, kw_only=True)
class Cfg:
    pass


def build(config, spec):
    import torch

    class Head(torch.nn.Module):
        """forward(sample, t, cond) -> (B, T, A){extra}"""

        def __init__(self):
            super().__init__()
            self.spec, self.net = spec, torch.nn.Linear(spec.action_dim, spec.action_dim)

        def forward(self, sample, t, cond):
            return self.net(sample){cut}

        {optim}

    return Head()


@hookimpl
def {hook}(register):
    register("head", "{name}", Cfg, {factory}, help="a third-party head", default_objective="ddpm", objectives=("ddpm",))
'''
OPTIM = 'def get_optim_groups(self, weight_decay):\n            return [{"params": list(self.parameters()), "weight_decay": weight_decay}]'


def head_source(name: str, *, factory: str = '__name__ + ":build"', hook: str = "register_components", optim: str = OPTIM, cut: str = "") -> str:
    return HEAD.format(name=name, factory=factory, hook=hook, optim=optim, cut=cut, extra="")


def make_dist(site: Path, dist: str, source: str, *, entry_point: str | None = None, version: str = "0.1") -> None:
    """Distribution ``dist`` whose ``polx`` entry point (named ``entry_point``, default the module) is module ``<dist>_mod``."""
    module = dist.replace("-", "_") + "_mod"
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[polx]\n{entry_point or module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    for var in ("POLX_DISABLE_PLUGINS", "POLX_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    return path


def plugins_list(args=("plugins", "list", "--json")) -> dict:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in json.loads(result.stdout)}


# ---------------------------------------------------------------------------------------------
# 1. name clashes never disable polx's own plugins


def test_a_third_party_head_named_like_a_shipped_one_is_refused_and_the_shipped_one_works(site):
    # "aaa_clash" sorts before "imf_attnres": by name order alone it would have won
    make_dist(site, "aaa-clash", head_source("imf_attnres"), entry_point="aaa_clash", version="9.9")
    loaded = load_plugins()
    newcomer = loaded.info("aaa_clash")
    assert loaded.info("imf_attnres").status == "ok" and newcomer.status == "broken"
    assert loaded.registry.get("head", "imf_attnres").plugin == "imf_attnres"
    for part in ("polx's own 'imf_attnres' (polx-plugin-imf-attnres", "'aaa_clash' (aaa-clash 9.9)", "uninstall aaa-clash",
                 "POLX_DISABLE_PLUGINS=aaa_clash"):  # fmt: skip
        assert part in newcomer.error, newcomer.error
    config = resolve_config(loaded, head="imf_attnres", env="pusht")  # the shipped head, with its own objective
    assert config.components.objective == "imf"


def test_an_entry_point_named_like_a_shipped_one_is_refused_and_the_disable_value_skips_it_alone(site, monkeypatch):
    make_dist(site, "evil-envs", head_source("evil_head"), entry_point="envs", version="1.0")
    loaded = load_plugins()
    shipped, newcomer = [i for i in loaded.infos if i.name == "envs"]
    assert shipped.distribution == "polx-plugin-envs" and shipped.status == "ok"
    assert newcomer.distribution == "evil-envs" and newcomer.status == "broken"
    assert "pusht" in loaded.registry.names("env") and "evil_head" not in loaded.registry.names("head")
    assert "polx's own plugin keeps it" in newcomer.error and "POLX_DISABLE_PLUGINS=evil-envs" in newcomer.error
    monkeypatch.setenv("POLX_DISABLE_PLUGINS", "evil-envs")  # the value the message gives
    again = load_plugins()
    assert [i.status for i in again.infos if i.name == "envs"] == ["ok", "disabled"]
    assert "pusht" in again.registry.names("env")


# ---------------------------------------------------------------------------------------------
# 2. contracts checked at load (plugins list) ...


def test_plugins_list_marks_a_factory_that_does_not_import_a_missing_head_method_and_a_hook_typo_broken(site):
    make_dist(site, "noimport", head_source("h_noimport", factory='"noimport_missing.heads:build"'))
    make_dist(site, "nomethod", head_source("h_nomethod", optim="pass"))
    make_dist(site, "typo", head_source("h_typo", hook="register_component"))
    make_dist(site, "twice", head_source("h_twice", optim=OPTIM.replace("list(self.parameters())", "list(self.parameters()) * 2")))
    make_dist(site, "fine", head_source("h_fine"))
    rows = plugins_list()
    assert rows["twice_mod"]["status"] == "broken" and "2 appear twice, 0 are missing" in rows["twice_mod"]["error"]
    assert rows["noimport_mod"]["status"] == "broken"
    assert "head 'h_noimport' of plugin 'noimport_mod' (noimport 0.1): factory 'noimport_missing.heads:build' does not import: ModuleNotFoundError" in rows["noimport_mod"]["error"]
    assert rows["nomethod_mod"]["status"] == "broken"
    assert "head 'h_nomethod' of plugin 'nomethod_mod' (nomethod 0.1)" in rows["nomethod_mod"]["error"]
    assert "has no get_optim_groups(weight_decay), which the trainer uses" in rows["nomethod_mod"]["error"]
    assert rows["typo_mod"]["status"] == "broken"
    assert "'register_component' (did you mean 'register_components'?)" in rows["typo_mod"]["error"]
    assert rows["fine_mod"]["status"] == "ok" and rows["fine_mod"]["components"] == {"head": ["h_fine"]}
    assert all(rows[n]["status"] == "ok" for n in ("imf_attnres", "ddpm_transformer", "envs", "loggers"))
    table = CliRunner().invoke(main, ["plugins", "list"]).output
    assert "nomethod_mod" in table and "broken: head 'h_nomethod'" in table


def test_a_broken_factory_under_strict_plugins_is_an_error(site, monkeypatch):
    from polx.contracts import check_loaded

    make_dist(site, "noimport", head_source("h_noimport", factory='"noimport_missing.heads:build"'))
    monkeypatch.setenv("POLX_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="noimport_mod.*does not import"):
        check_loaded(load_plugins())


# ---------------------------------------------------------------------------------------------
# ... and before a run exists (the dry call)

OBJECTIVE = '''
from attrs import define
from polx import hookimpl


@define(frozen=True, kw_only=True)
class Cfg:
    pass


class Short:
    """compute_loss is right; sample returns one step too few."""

    name = "short"
    default_num_steps = 1

    def __init__(self, config):
        self.config = config

    def compute_loss(self, head, batch):
        import torch
        from polx.policy.valid import masked_mean

        t = torch.zeros(batch["action"].shape[0], dtype=torch.long)
        x = torch.where(batch["valid"], batch["action"], 0.0)
        return masked_mean((head(x, t, batch["cond"]) - x) ** 2, batch["valid"]), {}

    def sample(self, head, cond, num_steps, generator):
        import torch

        return torch.zeros(cond.shape[0], head.spec.horizon - 1, head.spec.action_dim)


@hookimpl
def register_components(register):
    register("objective", "short", Cfg, Short, help="samples the wrong shape", heads=("ddpm_transformer",))
'''


def test_a_wrong_sample_shape_exits_2_naming_the_plugin_and_the_shape_with_no_run_directory(site, tmp_path):
    make_dist(site, "shortobj", OBJECTIVE, version="0.2")
    out = tmp_path / "runs"
    args = ["train", "--head", "ddpm_transformer", "--objective", "short", "--env", "pusht", "--out", str(out),
            "head.n_emb=16", "head.n_layer=1", "head.n_head=2"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "objective 'short' of plugin 'shortobj_mod' (shortobj 0.2)" in result.output
    assert "sample returned (2, 15, 2); expected (batch, horizon, action_dim) = (2, 16, 2)" in result.output
    assert not out.exists()
    printed = CliRunner().invoke(main, [*args, "--print-config"])  # printing the config calls nothing
    assert printed.exit_code == 0, printed.output


def test_a_head_whose_output_has_the_wrong_shape_exits_2_before_the_run(site, tmp_path):
    make_dist(site, "cuthead", head_source("cut", cut="[:, :-1]"))
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--head", "cut", "--env", "pusht", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "dry call of head 'cut' of plugin 'cuthead_mod' (cuthead 0.1) with objective 'ddpm'" in result.output
    assert "compute_loss raised RuntimeError" in result.output and not out.exists()


def test_check_plugins_passes_for_the_shipped_plugins_and_fails_naming_a_broken_one(site):
    runner = CliRunner()
    ok = runner.invoke(main, ["check", "plugins", "--json"])
    assert ok.exit_code == 0, ok.output
    assert all(r["status"] == "ok" for r in json.loads(ok.stdout))
    make_dist(site, "shortobj", OBJECTIVE)
    bad = runner.invoke(main, ["check", "plugins", "--json"])
    assert bad.exit_code == 1
    rows = {r["name"]: r for r in json.loads(bad.stdout)}
    assert rows["shortobj_mod"]["status"] == "broken" and "sample returned" in rows["shortobj_mod"]["error"]
    assert rows["ddpm_transformer"]["status"] == "ok"  # the head is not blamed for the objective that names it
    assert "1 plugin(s) broken: shortobj_mod" in bad.stderr


# ---------------------------------------------------------------------------------------------
# 3. the contract suite fails for a deliberately broken objective

LEAKY = '''
from attrs import define
from polx import hookimpl


@define(frozen=True, kw_only=True)
class Cfg:
    pass


class Leaky:
    """A plain mean over every entry: padding and masked dims change the loss."""

    name = "leaky"
    default_num_steps = 1

    def __init__(self, config):
        self.config = config

    def compute_loss(self, head, batch):
        import torch

        t = torch.zeros(batch["action"].shape[0], dtype=torch.long)
        return ((head(batch["action"], t, batch["cond"]) - batch["action"]) ** 2).mean(), {}

    def sample(self, head, cond, num_steps, generator):
        import torch

        return torch.zeros(cond.shape[0], head.spec.horizon, head.spec.action_dim)


@hookimpl
def register_components(register):
    register("objective", "leaky", Cfg, Leaky, help="ignores the valid mask", heads=("ddpm_transformer",))
'''


def test_the_contract_suite_fails_for_an_objective_that_ignores_the_valid_mask(site):
    make_dist(site, "leaky", LEAKY)
    plugins = load_plugins()
    with pytest.raises(ContractError, match=r"objective 'leaky' of plugin 'leaky_mod' \(leaky 0.1\) with head 'ddpm_transformer': entries that are not valid"):
        check_objective(plugins, "leaky", head="ddpm_transformer", head_config={"n_emb": 16, "n_layer": 1, "n_head": 2})


# ---------------------------------------------------------------------------------------------
# 4. dataset formats

FORMAT = '''
from pathlib import Path

import numpy as np
from attrs import define
from polx import hookimpl


@define(frozen=True, kw_only=True)
class Cfg:
    pass


class Reader:
    format = "steps"

    def __init__(self, path, ends, dtype):
        self.path, self.episode_ends, self.dtype = path, np.asarray(ends, np.int64), dtype

    def keys(self):
        return ["action"]

    def array_info(self, key):
        return (5, 2), np.dtype(self.dtype)

    def read(self, key, start, stop):
        return np.zeros((stop - start, 2), np.float32)


class Steps:
    """Claims directories holding a file named MODE: lengths, wrongtype, good or raise."""

    name = "steps"

    def __init__(self, config):
        self.config = config

    def detect(self, path):
        if (Path(path) / "raise").exists() or Path(path).name == "boom":
            raise OSError("detect exploded")
        return any((Path(path) / m).exists() for m in ("lengths", "wrongtype", "good"))

    def open(self, path):
        path = Path(path)
        if (path / "lengths").exists():
            return Reader(path, [3, 2], "float32")  # episode lengths, not ends
        if (path / "wrongtype").exists():
            return Reader(path, [3, 5], "float64")  # array_info disagrees with read
        return Reader(path, [3, 5], "float32")


@hookimpl
def register_components(register):
    register("dataset", "steps", Cfg, Steps, help="test format")
'''


def data_dir(root: Path, mode: str) -> Path:
    path = root / mode
    path.mkdir()
    (path / mode).write_text("")
    return path


def test_readers_are_checked_at_open_episode_ends_and_array_info_against_read(site, tmp_path):
    make_dist(site, "stepsfmt", FORMAT)
    runner = CliRunner()
    assert runner.invoke(main, ["data", "info", str(data_dir(tmp_path, "good"))]).exit_code == 0
    lengths = runner.invoke(main, ["data", "info", str(data_dir(tmp_path, "lengths"))])
    assert lengths.exit_code == 2
    assert "episode_ends [3, 2] must be strictly increasing and end at the arrays' length 5" in lengths.output
    assert "lengths [3, 2] are ends [3, 5]" in lengths.output
    wrong = runner.invoke(main, ["data", "info", str(data_dir(tmp_path, "wrongtype"))])
    assert wrong.exit_code == 2
    assert "array_info('action') says (5, 2) float64, but read('action', 0, 1) returned (1, 2) float32" in wrong.output


def test_a_raising_detect_is_skipped_and_named_while_the_other_formats_answer(site, tmp_path):
    from polx.data.replay_buffer import ReplayBuffer

    make_dist(site, "stepsfmt", FORMAT, version="0.4")
    store = tmp_path / "boom"  # the broken detect raises on this name; zarr claims the store
    with ReplayBuffer.writer(store) as rb:
        rb.add_episode({"action": np.zeros((3, 2), np.float32)})
    ok = CliRunner().invoke(main, ["data", "info", str(store)])
    assert ok.exit_code == 0, ok.output
    assert "dataset format 'steps' of plugin 'stepsfmt_mod' (stepsfmt 0.4): detect raised OSError: detect exploded; it was skipped" in ok.stderr
    unknown = tmp_path / "other"
    unknown.mkdir()
    (unknown / "raise").write_text("")
    refused = CliRunner().invoke(main, ["data", "info", str(unknown)])
    assert refused.exit_code == 2
    assert "is in no format polx recognises; tried" in refused.output and "skipped dataset format 'steps'" in refused.output


def test_check_reader_refuses_lengths_and_accepts_ends():
    from polx.data.formats import check_reader

    class R:
        path, format = Path("x"), "r"

        def __init__(self, ends):
            self.episode_ends = np.asarray(ends)

        def keys(self):
            return ["a"]

        def array_info(self, key):
            return (5,), np.dtype(np.int32)

        def read(self, key, start, stop):
            return np.zeros(stop - start, np.int32)

    assert check_reader(R([3, 5]))
    for bad in ([3, 2], [2, 3], [0, 5], [5, 5]):
        with pytest.raises(DatasetError, match="episode_ends"):
            check_reader(R(bad))


def test_check_does_not_import_the_command_line():
    import ast

    import polx.check

    tree = ast.parse(Path(polx.check.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert "polx.cli" not in imported

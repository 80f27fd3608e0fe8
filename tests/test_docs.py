"""docs/plugin_hooks.md is true: every hook documented and tested by name, every example run.

The page's python blocks are of two sorts. A block whose first line is ``# polx_foo/<module>.py``
is a file of the example plugin ``polx_foo``: the files are written to a temporary package, the
plugin is loaded through the same door as an installed one and its ``tiny_mlp`` head is trained
with the real ``ddpm`` objective on the toy env, logging through its ``csv`` logger. Every other
block is a hook snippet: it is executed and the hook implementation it defines is called.
"""

from __future__ import annotations

import ast
import csv
import importlib
import inspect
import re
import sys
import tomllib
import types
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from polx import hookspecs
from polx.components import Episode, ObsActionSpec, Run

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "polx_spec"))
DOC = (ROOT / "docs" / "plugin_hooks.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC, re.S | re.M)
FILES = {m.group(1): block for block in BLOCKS if (m := re.match(r"# (polx_foo/\w+\.py)\n", block))}
SNIPPETS = [block for block in BLOCKS if not re.match(r"# polx_foo/", block)]
SPEC = ObsActionSpec(action_dim=2, horizon=8, n_obs_steps=2, cond_dim=4)


def test_hookspecs_found():
    assert set(HOOKS) >= {"register_components", "build_head", "compute_loss", "sample", "log_metrics", "render_trajectory"}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert re.search(rf"^## {hook}\({re.escape(params)}\)$", DOC, re.M), f"docs/plugin_hooks.md lacks '## {hook}({params})'"
    section = DOC.split(f"## {hook}(", 1)[1].split("\n## ", 1)[0]
    assert "```python" in section, f"the {hook} section has no example"


def _test_names() -> set[str]:
    files = [p for p in [*ROOT.glob("tests/test_*.py"), *ROOT.glob("plugins/*/tests/test_*.py")] if p.name != "test_docs.py"]
    return {node.name for p in files for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_named_for_it(hook):
    names = _test_names()
    assert any(n.startswith(f"test_{hook}_hook") for n in names), f"no test function named test_{hook}_hook_... (tests/test_hooks.py)"


def test_the_toml_example_declares_an_entry_point():
    toml = re.search(r"^```toml\n(.*?)^```", DOC, re.S | re.M).group(1)
    assert tomllib.loads(toml)["project"]["entry-points"]["polx"] == {"foo": "polx_foo.plugin"}


# ---------------------------------------------------------------------------------------------
# the example plugin polx_foo, as files


@pytest.fixture
def polx_foo(tmp_path, monkeypatch):
    assert set(FILES) >= {"polx_foo/config.py", "polx_foo/heads.py", "polx_foo/plugin.py", "polx_foo/csv_logger.py", "polx_foo/demos.py"}
    package = tmp_path / "site" / "polx_foo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, text in FILES.items():
        (tmp_path / "site" / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for mod in [m for m in sys.modules if m == "polx_foo" or m.startswith("polx_foo.")]:
        monkeypatch.delitem(sys.modules, mod)
    yield importlib.import_module("polx_foo.plugin")
    for mod in [m for m in sys.modules if m == "polx_foo" or m.startswith("polx_foo.")]:
        del sys.modules[mod]


def test_the_example_plugin_loads_without_torch_and_registers(polx_foo):
    from polx.plugins import load_plugins

    assert not any(m.startswith("polx_foo.heads") for m in sys.modules)  # loading imported config classes only
    plugins = load_plugins(entry_points=[], extra=[("foo", polx_foo)])
    assert plugins.info("foo").status == "ok"
    assert plugins.info("foo").help == {"head": {"tiny_mlp": "a two-layer MLP head"}, "logger": {"csv": "metrics.csv in the run directory: step, key, value"}}


def test_the_readme_tiny_mlp_trains_with_ddpm_and_logs_to_csv(polx_foo, tmp_path):
    """The README's example, completed: a real training run of a few steps, then rollouts."""
    import toy_plugin
    from polx.plugins import load_plugins
    from polx.runs import prepare_training
    from polx.train.trainer import run_training

    ddpm = [ep for ep in metadata.entry_points(group="polx") if ep.name == "ddpm_transformer"]
    if not ddpm:
        pytest.skip("polx-plugin-ddpm-transformer is not installed")
    plugins = load_plugins(entry_points=ddpm, extra=[("foo", polx_foo), ("toy", toy_plugin)])
    overrides = toy_plugin.toy_overrides(tmp_path / "cache", "train.max_steps=4", "eval.rollout_every=0", "eval.n_test=1",
                                         "eval.n_train=0", "eval.n_vis=1", "objective.num_inference_steps=4", "head.hidden=32")
    plan = prepare_training(plugins, head="tiny_mlp", env="toy_reach", loggers=["csv"], out=tmp_path / "runs",
                            overrides=overrides, argv=["polx", "train", "(docs example)"])
    assert plan.config.components.objective == "ddpm"
    run_dir = run_training(plan)
    rows = list(csv.reader((Path(run_dir) / "metrics.csv").open()))
    losses = [float(value) for _, key, value in rows if key == "train_loss"]
    assert losses and all(np.isfinite(losses))
    assert any(key == "test_mean_score" for _, key, _ in rows)


def test_the_pairing_in_the_example_is_checked(polx_foo):
    from polx.config import resolve_config
    from polx.errors import UserInputError
    from polx.plugins import load_plugins

    import toy_plugin

    plugins = load_plugins(entry_points=[], extra=[("foo", polx_foo), ("toy", toy_plugin)])
    with pytest.raises(UserInputError, match="head 'tiny_mlp' does not support objective 'toy_flow'.*--objective ddpm"):
        resolve_config(plugins, head="tiny_mlp", env="toy_reach", objective="toy_flow")


def test_the_demos_example_writes_a_replay_buffer(polx_foo, tmp_path):
    from polx.data.replay_buffer import ReplayBuffer

    summary = importlib.import_module("polx_foo.demos").write_demos(tmp_path / "demos.zarr", episodes=3)
    rb = ReplayBuffer.open(summary["path"])
    assert rb.n_episodes == 3 and set(rb.keys()) == {"pos", "goal", "action"}
    arrays, first = rb.load(), rb.get_episode(0)  # the reading API the page names
    assert len(arrays["pos"]) == rb.n_steps == int(rb.episode_ends[-1]) and len(first["goal"]) == rb.episode_ends[0]


# ---------------------------------------------------------------------------------------------
# the hook snippets, each executed and called


def _snippet(hook: str) -> dict:
    found = [block for block in SNIPPETS if re.search(rf"^def {hook}\(", block, re.M)]
    assert len(found) == 1, f"expected one example defining {hook}"
    namespace: dict = {"__name__": f"docs_example_{hook}"}
    exec(compile(found[0], f"docs/plugin_hooks.md ({hook})", "exec"), namespace)
    return namespace


def test_register_components_example(polx_foo):
    ns = _snippet("register_components")
    calls = []
    ns["register_components"](register=lambda *args, **kw: calls.append((args, kw)))
    (kind, name, cfg, factory), extras = calls[0]
    assert (kind, name, factory) == ("env", "reach", "polx_foo.reach:ReachAdapter") and extras["preset"]["eval"]["max_steps"] == 60
    from polx.plugins import Registry

    Registry().register(*calls[0][0], plugin="foo", **extras)  # what the real registry accepts


def test_build_head_example(polx_foo):
    build_head = _snippet("build_head")["build_head"]
    from polx_foo.config import TinyMLPConfig

    assert build_head(name="tiny_mlp", config=TinyMLPConfig(), spec=SPEC) is None
    head = build_head(name="tiny_mlp_wide", config=TinyMLPConfig(hidden=8), spec=SPEC)
    sample = torch.randn(3, SPEC.horizon, SPEC.action_dim)
    out = head(sample, torch.randint(0, 100, (3,)), torch.randn(3, SPEC.n_obs_steps, SPEC.cond_dim))
    assert out.shape == sample.shape and head.net[0].out_features == 32


class _Regression(torch.nn.Module):
    """cond (B, To, D) -> (B, T, A), the head the l1_bc examples call."""

    def __init__(self):
        super().__init__()
        self.spec, self.lin = SPEC, torch.nn.Linear(SPEC.n_obs_steps * SPEC.cond_dim, SPEC.horizon * SPEC.action_dim)

    def forward(self, cond):
        return self.lin(cond.flatten(1)).view(-1, SPEC.horizon, SPEC.action_dim)


def test_compute_loss_example_ignores_entries_that_are_not_valid():
    compute_loss = _snippet("compute_loss")["compute_loss"]
    head, objective = _Regression(), types.SimpleNamespace(name="l1_bc")
    action, cond = torch.randn(4, SPEC.horizon, SPEC.action_dim), torch.randn(4, SPEC.n_obs_steps, SPEC.cond_dim)
    valid = torch.rand(action.shape) < 0.5
    loss, metrics = compute_loss(objective=objective, head=head, batch={"action": action, "cond": cond, "valid": valid})
    garbage = torch.where(valid, action, 1e3)
    assert float(compute_loss(objective=objective, head=head, batch={"action": garbage, "cond": cond, "valid": valid})[0]) == pytest.approx(float(loss))
    assert metrics == {"l1": pytest.approx(float(loss))}
    assert compute_loss(objective=types.SimpleNamespace(name="ddpm"), head=head, batch={}) is None


def test_sample_example():
    sample = _snippet("sample")["sample"]
    out = sample(objective=types.SimpleNamespace(name="l1_bc"), head=_Regression(), cond=torch.randn(2, SPEC.n_obs_steps, SPEC.cond_dim), num_steps=None, generator=None)
    assert out.shape == (2, SPEC.horizon, SPEC.action_dim)


def test_log_metrics_example(tmp_path, capsys):
    log_metrics = _snippet("log_metrics")["log_metrics"]
    run = Run(dir=tmp_path, name="r1", config={})
    log_metrics(run=run, step=10, metrics={"train_loss": 1.0}, images={})
    log_metrics(run=run, step=20, metrics={"test_mean_score": 0.5}, images={})
    assert capsys.readouterr().out == "[r1] step 20: score 0.500\n"


def test_render_trajectory_example(tmp_path):
    from PIL import Image

    render = _snippet("render_trajectory")["render_trajectory"]
    ReachEnv = type("ReachEnv", (), {"unwrapped": property(lambda self: self)})
    episode = Episode(seed=0, actions=np.array([[-1.0, -1.0], [0.0, 0.5], [1.0, 1.0]]), rewards=np.zeros(3))
    path = str(tmp_path / ".episode_0.partial.png")  # what rollouts pass: a temporary name
    assert render(env=ReachEnv(), episode=episode, path=path) == path
    assert Image.open(path).format == "PNG"
    assert render(env=type("Other", (), {"unwrapped": None})(), episode=episode, path=path) is None

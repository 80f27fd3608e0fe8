"""Config resolution: layer order, file formats, strict values, round trip through config.yaml."""

from __future__ import annotations

import sys
import types

import pytest
import yaml
from attrs import define, field
from hypothesis import given, settings
from hypothesis import strategies as st

from polx import hookimpl
from polx.config import parse_override, resolve_config
from polx.errors import ConfigError, UnknownComponentError, UserInputError
from polx.plugins import load_plugins
from polx.runs import config_from_saved


@define(frozen=True, kw_only=True)
class HeadCfg:
    n_emb: int = 32
    n_layer: int = 2
    dropout: float = 0.0


@define(frozen=True, kw_only=True)
class EnvCfg:
    obs_type: str = "state"


@define(frozen=True, kw_only=True)
class ObjCfg:
    steps: int = 1


@define(frozen=True, kw_only=True)
class LogCfg:
    mode: str | None = None
    enabled: bool = True


def _module() -> types.ModuleType:
    mod = types.ModuleType("layered_plugin")

    @hookimpl
    def register_components(register):
        # env preset and head preset both set head.n_layer and eval.max_steps: the head's wins
        register("head", "h", HeadCfg, "math:sqrt", default_objective="o",
                 preset={"head": {"n_layer": 6}, "eval": {"max_steps": 40}})
        register("env", "e", EnvCfg, "math:sqrt",
                 preset={"head": {"n_layer": 4, "dropout": 0.1}, "eval": {"max_steps": 30, "n_test": 3}})
        register("objective", "o", ObjCfg, "math:sqrt")
        register("objective", "o2", ObjCfg, "math:sqrt", preset={"objective": {"steps": 9}})
        register("logger", "sink", LogCfg, "math:sqrt")

    mod.register_components = register_components
    return mod


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=[], extra=[("layered", _module())])


def test_layer_order(plugins, tmp_path):
    cfg = resolve_config(plugins, head="h", env="e")
    assert cfg.head.n_layer == 6 and cfg.head.dropout == 0.1  # head preset over env preset
    assert cfg.eval.max_steps == 40 and cfg.eval.n_test == 3
    file = tmp_path / "c.yaml"
    file.write_text("head: {n_layer: 8}\neval: {max_steps: 50}\n")
    cfg = resolve_config(plugins, head="h", env="e", config_files=[file], overrides=["eval.max_steps=60"])
    assert cfg.head.n_layer == 8 and cfg.eval.max_steps == 60  # file over presets, override over file


def test_objective_override_and_its_preset(plugins):
    assert resolve_config(plugins, head="h", env="e").components.objective == "o"
    cfg = resolve_config(plugins, head="h", env="e", objective="o2")
    assert cfg.components.objective == "o2" and cfg.objective.steps == 9


def test_toml_file(plugins, tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("[train]\nbatch_size = 7\n[loggers.sink]\nmode = 'offline'\n")
    cfg = resolve_config(plugins, head="h", env="e", config_files=[file], loggers=["sink"])
    assert cfg.train.batch_size == 7 and cfg.loggers["sink"].mode == "offline"


def test_every_problem_reported_once_per_line(plugins):
    with pytest.raises(ConfigError) as err:
        resolve_config(plugins, head="h", env="e", overrides=["train.lr=fast", "head.n_emb=2.5", "eval.n_tset=3"])
    lines = str(err.value).splitlines()
    assert "eval.n_tset: unknown key (did you mean eval.n_test?)" in lines
    # unknown keys are reported first; value errors follow once the keys are right
    with pytest.raises(ConfigError) as err:
        resolve_config(plugins, head="h", env="e", overrides=["train.lr=fast", "head.n_emb=2.5"])
    assert sorted(str(err.value).splitlines()) == ["head.n_emb: expected int, got 2.5", "train.lr: expected float, got 'fast'"]


def test_unknown_logger_and_missing_file(plugins, tmp_path):
    with pytest.raises(UnknownComponentError, match="unknown logger 'tb'; available: json, sink"):
        resolve_config(plugins, head="h", env="e", loggers=["tb"])
    with pytest.raises(UserInputError, match="does not exist"):
        resolve_config(plugins, head="h", env="e", config_files=[tmp_path / "missing.yaml"])


def test_cross_field_validation(plugins):
    with pytest.raises(ConfigError, match=r"policy.n_action_steps: n_obs_steps - 1 \+ n_action_steps must be <= horizon"):
        resolve_config(plugins, head="h", env="e", overrides=["policy.horizon=4", "policy.n_action_steps=8"])


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 10**7), n_emb=st.integers(1, 4096), lr=st.floats(1e-8, 1.0))
def test_saved_config_round_trips(plugins, steps, n_emb, lr):
    cfg = resolve_config(plugins, head="h", env="e", loggers=["sink"],
                         overrides=[f"train.max_steps={steps}", f"head.n_emb={n_emb}", f"train.lr={lr!r}"])
    saved = yaml.safe_load(cfg.to_yaml())
    assert config_from_saved(plugins, saved) == cfg
    assert config_from_saved(plugins, saved, ["train.max_steps=5"]).train.max_steps == 5


@given(value=st.one_of(st.integers(), st.booleans(), st.text(alphabet="abcxyz_", min_size=1)))
def test_override_values_parse_as_yaml_scalars(value):
    text = str(value).lower() if isinstance(value, bool) else str(value)
    keys, parsed = parse_override(f"a.b_c={text}")
    assert keys == ["a", "b_c"]
    assert parsed == yaml.safe_load(text)


@pytest.mark.parametrize("text, expected", [("1e-4", 1e-4), ("3E5", 3e5), ("-2.5e-3", -2.5e-3), ("1.0e-08", 1e-8)])
def test_exponent_floats_are_floats(text, expected):
    assert parse_override(f"train.lr={text}")[1] == expected


# --- one section resolver: every command that reads config sections goes through resolve_sections


@pytest.fixture(scope="module")
def shipped():
    return load_plugins()  # polx's own plugins: env_and_eval and build_env_adapter build a real adapter


@settings(max_examples=15, deadline=None)
@given(n_test=st.integers(1, 500), max_steps=st.integers(1, 10**5), bad=st.sampled_from(["n_tset", "max_step", "rollout_evry"]))
def test_every_resolver_reads_an_override_as_resolve_config_does(shipped, n_test, max_steps, bad):
    """A run's config, an exported policy's env/eval and ``dagger.*`` agree on values and on problem lines."""
    from polx.dagger.config import resolve_dagger_config
    from polx.deploy.evaluate import env_and_eval

    good = [f"eval.n_test={n_test}", f"eval.max_steps={max_steps}", "env.obs_type=keypoints"]
    run = resolve_config(shipped, head="imf_attnres", env="pusht", overrides=good)
    saved = yaml.safe_load(run.to_yaml())
    adapter, ev, ex = env_and_eval(shipped, saved, good)
    assert ev == run.eval and adapter.config == run.env and ex == run.exec

    problems = []
    for call in (
        lambda: resolve_config(shipped, head="imf_attnres", env="pusht", overrides=[f"eval.{bad}=1"]),
        lambda: env_and_eval(shipped, saved, [f"eval.{bad}=1"]),
        lambda: resolve_dagger_config([f"dagger.{bad}=1"]),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        problems.append(info.value.problems)
    assert problems[0] == problems[1] and len(problems[0]) == 1 and problems[0][0].startswith(f"eval.{bad}: unknown key")
    assert len(problems[2]) == 1 and problems[2][0].startswith(f"dagger.{bad}: unknown key")


def test_a_scoped_resolver_refuses_an_override_outside_its_sections_by_name(shipped):
    from polx.deploy.evaluate import env_and_eval
    from polx.runs import build_env_adapter

    saved = yaml.safe_load(resolve_config(shipped, head="imf_attnres", env="pusht").to_yaml())
    with pytest.raises(UserInputError, match=r"'train.lr=0.1': only env.KEY=VALUE, eval.KEY=VALUE and exec.KEY=VALUE overrides apply here"):
        env_and_eval(shipped, saved, ["train.lr=0.1"])
    with pytest.raises(UserInputError, match=r"'eval.n_test=3': only env.KEY=VALUE overrides apply here"):
        build_env_adapter(shipped, "pusht", ["eval.n_test=3"])
    with pytest.raises(ConfigError, match=r"env.obs_typ: unknown key \(did you mean env.obs_type\?\)"):
        build_env_adapter(shipped, "pusht", ["env.obs_typ=image"])

"""Config fields (core's, every registered component's, DAgger's) are documented where they are
defined, and ``--print-config`` shows it.

Also: cross-field rules live in the config classes, so ``--print-config`` refuses what the
trainer would refuse (exit 2, one line naming the key) instead of printing it.
"""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.config import CORE_SECTIONS, ComponentsConfig, TrainConfig, _Loader, resolve_config
from polx.dagger.config import DaggerConfig
from polx.errors import ConfigError
from polx.plugins import load_plugins

PLUGINS = load_plugins()
PAIRS = [(h, c.default_objective) for c in PLUGINS.registry for h in [c.name] if c.kind == "head" and c.default_objective]
ENVS = PLUGINS.registry.names("env")
#: every component config class with options (plugins' and core's built-in ones), and DAgger's section
COMPONENT_CONFIGS = {c.config_cls for c in PLUGINS.registry if c.config_cls is not None and attrs.has(c.config_cls) and attrs.fields(c.config_cls)}
DOCUMENTED = sorted(COMPONENT_CONFIGS, key=lambda c: (c.__module__, c.__qualname__)) + [DaggerConfig]


def assert_documented(cls: type) -> None:
    assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(")  # a written docstring, not attrs' signature
    undocumented = [a.name for a in attrs.fields(cls) if not a.metadata.get("doc")]
    assert not undocumented, f"{cls.__name__}: fields without doc=...: {undocumented}"


@pytest.mark.parametrize("cls", [ComponentsConfig, *CORE_SECTIONS.values()], ids=lambda c: c.__name__)
def test_every_core_field_has_a_doc_and_its_class_a_docstring(cls):
    assert_documented(cls)


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_component_and_dagger_field_has_a_doc_and_its_class_a_docstring(cls):
    assert_documented(cls)


@pytest.mark.skipif(
    "imf_attnres" not in PLUGINS.registry.names("head") or "pusht" not in ENVS, reason="needs the imf_attnres head and the pusht env"
)
def test_print_config_comments_a_plugin_field_with_its_doc(tmp_path):
    cmd = [sys.executable, "-m", "polx", "train", "--head", "imf_attnres", "--env", "pusht", "--print-config"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("head:") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(" ")), len(lines))  # the next section
    text = attrs.fields(PLUGINS.registry.get("head", "imf_attnres").config_cls).n_emb.metadata["doc"]
    assert any(line.startswith("  n_emb:") and line.endswith(f"# {text}") for line in lines[start:end]), lines[start:end]


@pytest.mark.skipif(not PAIRS or not ENVS, reason="needs an installed head and env")
def test_commented_yaml_reads_back_as_the_same_config_and_carries_every_doc():
    head, _ = PAIRS[0]
    config = resolve_config(PLUGINS, head=head, env=ENVS[0], loggers=("json",) if "json" in PLUGINS.registry.names("logger") else ())
    text = config.to_yaml(comments=True)
    assert yaml.load(text, Loader=_Loader) == config.to_dict()  # noqa: S506 - the config's own SafeLoader
    lines = text.splitlines()
    for section, cls in {"components": ComponentsConfig, **CORE_SECTIONS}.items():
        for a in attrs.fields(cls):
            assert any(line.startswith(f"  {a.name}:") and line.endswith(f"# {a.metadata['doc']}") for line in lines), (section, a.name)


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-6, 1.0), ratio=st.floats(0.0, 2.0))
def test_min_lr_above_lr_is_refused_by_the_class(lr, ratio):
    min_lr = lr * ratio
    if min_lr <= lr:
        assert TrainConfig(lr=lr, min_lr=min_lr).min_lr == min_lr
    else:
        with pytest.raises(ValueError, match=r"^min_lr: must be <= train.lr"):
            TrainConfig(lr=lr, min_lr=min_lr)


@pytest.mark.skipif(not PAIRS or not ENVS, reason="needs an installed head and env")
def test_print_config_of_an_invalid_config_exits_2(tmp_path):
    head, _ = PAIRS[0]
    cmd = [sys.executable, "-m", "polx", "train", "--head", head, "--env", ENVS[0], "--print-config", "train.lr=1e-4", "train.min_lr=1e-3"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "train.min_lr: must be <= train.lr" in done.stderr and done.stdout == ""
    with pytest.raises(ConfigError, match="train.min_lr: must be <= train.lr"):
        resolve_config(PLUGINS, head=head, env=ENVS[0], overrides=["train.min_lr=1.0"])

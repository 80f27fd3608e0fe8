"""The plugin through the same door as any other: entry point, registry, config converter."""

import subprocess
import sys

import attrs
import pytest
import torch

from polx.components import HeadModule, ObsActionSpec, Objective
from polx.config import converter
from polx.plugins import load_plugins
from polx_imf_attnres.config import IMFAttnResConfig, IMFConfig


def test_plugin_module_imports_without_torch():
    code = "import sys, polx_imf_attnres.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_builds_head_and_objective_from_entry_points():
    plugins = load_plugins()
    assert plugins.info("imf_attnres").status == "ok"
    head_c = plugins.registry.get("head", "imf_attnres")
    assert head_c.default_objective == "imf" and head_c.config_cls is IMFAttnResConfig
    assert head_c.factory == "polx_imf_attnres.head:build_head"  # imported lazily
    spec = ObsActionSpec(action_dim=2, horizon=4, n_obs_steps=2, cond_dim=3)
    head = plugins.hook.build_head(name="imf_attnres", config=IMFAttnResConfig(n_emb=16, n_layer=1), spec=spec)
    assert isinstance(head, HeadModule) and isinstance(head, torch.nn.Module)
    objective = plugins.registry.get("objective", "imf").build(IMFConfig())
    assert isinstance(objective, Objective)
    x = plugins.hook.sample(objective=objective, head=head, cond=torch.zeros(3, 2, 3), num_steps=None, generator=None)
    assert x.shape == (3, 4, 2)
    batch = {"action": x, "cond": torch.zeros(3, 2, 3), "action_is_pad": torch.zeros(3, 4, dtype=torch.bool)}
    loss, metrics = plugins.hook.compute_loss(objective=objective, head=head, batch=batch)
    assert loss.ndim == 0 and "loss_u" in metrics


@pytest.mark.parametrize("cls", [IMFAttnResConfig, IMFConfig])
def test_configs_round_trip_through_the_converter(cls):
    default = cls()
    assert converter.structure(converter.unstructure(default), cls) == default
    assert all(a.default is not attrs.NOTHING for a in attrs.fields(cls))  # every default stated


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="r_equals_t_ratio"):
        IMFConfig(r_equals_t_ratio=1.5)
    with pytest.raises(ValueError, match="jvp_impl"):
        IMFConfig(jvp_impl="forward")
    with pytest.raises(ValueError, match="n_layer"):
        IMFAttnResConfig(n_layer=0)
    assert converter.structure({"ffn_hidden": None, "n_emb": 64}, IMFAttnResConfig).n_emb == 64

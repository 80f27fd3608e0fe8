"""Registration through the real entry point, and a cheap (torch-free) plugin import."""

import subprocess
import sys

import torch

from polx.components import HeadModule, ObsActionSpec, Objective
from polx.plugins import load_plugins
from polx_ddpm_transformer.config import DDPMConfig, DDPMTransformerConfig


def test_importing_the_plugin_module_does_not_import_torch():
    code = "import sys, polx_ddpm_transformer.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_entry_point_registers_the_head_and_its_default_objective():
    plugins = load_plugins()
    assert plugins.info("ddpm_transformer").status == "ok"
    head_c = plugins.component("head", "ddpm_transformer")
    assert head_c.config_cls is DDPMTransformerConfig and head_c.default_objective == "ddpm"
    assert isinstance(head_c.factory, str)  # imported only when a head is built
    objective_c = plugins.component("objective", "ddpm")
    assert objective_c.config_cls is DDPMConfig and head_c.help and objective_c.help


def test_head_and_objective_build_and_run_through_the_hooks():
    plugins = load_plugins()
    spec = ObsActionSpec(action_dim=2, horizon=16, n_obs_steps=2, cond_dim=20)
    head = plugins.hook.build_head(name="ddpm_transformer", config=DDPMTransformerConfig(n_layer=1, n_emb=32), spec=spec)
    objective = plugins.component("objective", "ddpm").build(DDPMConfig(num_inference_steps=4))
    assert isinstance(head, HeadModule) and isinstance(objective, Objective) and head.spec == spec
    batch = {"action": torch.zeros(3, 16, 2), "cond": torch.zeros(3, 2, 20), "action_is_pad": torch.zeros(3, 16, dtype=torch.bool)}
    loss, metrics = plugins.hook.compute_loss(objective=objective, head=head, batch=batch)
    assert loss.ndim == 0 and "mse" in metrics
    chunk = plugins.hook.sample(objective=objective, head=head, cond=batch["cond"], num_steps=None, generator=None)
    assert chunk.shape == (3, 16, 2)

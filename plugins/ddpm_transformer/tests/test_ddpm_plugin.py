"""Registration through the real entry point, and a cheap (torch-free) plugin import."""

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.components import HeadModule, ObsActionSpec, Objective
from polx.config import ConfigError, resolve_config
from polx.plugins import load_plugins
from polx.runs import check_sample_steps
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


@settings(max_examples=25, deadline=None)
@given(timesteps=st.integers(1, 50), counts=st.lists(st.integers(1, 80), max_size=3), num_steps=st.one_of(st.none(), st.integers(1, 80)))
def test_sampling_step_counts_above_the_train_timesteps_are_refused_at_config_time(timesteps, counts, num_steps):
    """Every count over objective.num_train_timesteps is named, and only those; the rest pass."""
    plugins = load_plugins()
    inference = min(timesteps, 10)
    overrides = [f"objective.num_train_timesteps={timesteps}", f"objective.num_inference_steps={inference}", f"eval.sample_steps={counts}"]
    overrides += [] if num_steps is None else [f"eval.num_steps={num_steps}"]
    config = resolve_config(plugins, head="ddpm_transformer", env="offline", overrides=overrides)
    bad = ([("eval.num_steps", num_steps)] if num_steps is not None and num_steps > timesteps else []) + [("eval.sample_steps", n) for n in counts if n > timesteps]
    if not bad:
        check_sample_steps(config)
        return
    with pytest.raises(ConfigError) as caught:
        check_sample_steps(config)
    assert len(caught.value.problems) == len(bad)
    assert caught.value.problems == [f"{key}: the 'ddpm' objective samples with 1 to {timesteps} steps here; got {n}" for key, n in bad]


def test_train_with_too_many_sample_steps_exits_2_before_writing(tmp_path):
    pytest.importorskip("polx_envs")
    cmd = [sys.executable, "-m", "polx", "train", "--head", "ddpm_transformer", "--env", "pusht", "--out", str(tmp_path / "runs"),
           "env.obs_type=keypoints", "eval.sample_steps=[1,500]"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "eval.sample_steps: the 'ddpm' objective samples with 1 to 100 steps here; got 500" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()

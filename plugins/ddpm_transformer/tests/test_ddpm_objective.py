"""The ddpm objective: masked loss invariants, oracle heads, and the sampler's contract."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from polx.components import ObsActionSpec, Objective
from polx.errors import UserInputError
from polx_ddpm_transformer.config import DDPMConfig, DDPMTransformerConfig
from polx_ddpm_transformer.head import DiffusionTransformer
from polx_ddpm_transformer.objective import DDPMObjective

SPEC = ObsActionSpec(action_dim=3, horizon=6, n_obs_steps=2, cond_dim=4)
B = 4


def small_head(**overrides) -> DiffusionTransformer:
    torch.manual_seed(0)
    config = DDPMTransformerConfig(**{"n_layer": 2, "n_head": 2, "n_emb": 16, **overrides})
    return DiffusionTransformer(config, SPEC)


# non-causal with a transformer memory encoder: every input entry reaches every output entry
MIXING_HEAD = small_head(causal_attn=False, n_cond_layers=1, p_drop_attn=0.1, p_drop_emb=0.1)


def make_batch(seed=0, dtype=torch.float32) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "action": (torch.rand(B, SPEC.horizon, SPEC.action_dim, generator=gen) * 2 - 1).to(dtype),
        "cond": torch.randn(B, SPEC.n_obs_steps, SPEC.cond_dim, generator=gen).to(dtype),
        "action_is_pad": torch.rand(B, SPEC.horizon, generator=gen) < 0.3,
        "action_mask": torch.rand(1, 1, SPEC.action_dim, generator=gen) < 0.7,
    }


class OracleHead(nn.Module):
    """Predicts exactly the noise (or clean chunk) of the chain that started at ``action``."""

    def __init__(self, objective: DDPMObjective, action: torch.Tensor):
        super().__init__()
        self.spec, self.objective, self.action = SPEC, objective, action
        self.calls = 0

    def forward(self, sample, t, cond):
        self.calls += 1
        a = self.objective.schedule.alphas_cumprod[t].to(sample.dtype).view(-1, 1, 1)
        if self.objective.config.prediction_type == "sample":
            return self.action.expand_as(sample)
        return (sample - a.sqrt() * self.action) / (1 - a).sqrt()


def loss_and_grads(head, objective, batch, seed=0):
    head.zero_grad()
    torch.manual_seed(seed)  # same timesteps, noise and dropout for every call
    loss, metrics = objective.compute_loss(head, batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in head.parameters()], metrics


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_an_oracle_head_gives_zero_loss(prediction_type):
    objective = DDPMObjective(DDPMConfig(prediction_type=prediction_type))
    batch = make_batch(dtype=torch.float64)
    # the oracle knows the real action even where it is padded or masked: there it is wrong, and
    # the loss must not see it
    torch.manual_seed(0)
    loss, metrics = objective.compute_loss(OracleHead(objective, batch["action"]), batch)
    assert float(loss) < 1e-20 and metrics["mse"] < 1e-20
    wrong, _ = objective.compute_loss(OracleHead(objective, batch["action"] + 0.1), batch)
    assert float(wrong) > 1e-6  # the test can fail


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    mask_shape=st.sampled_from([(B, SPEC.horizon, SPEC.action_dim), (1, 1, SPEC.action_dim), (B, 1, SPEC.action_dim)]),
    float_mask=st.booleans(),
    scale=st.floats(1e-3, 1e4),
    prediction_type=st.sampled_from(["epsilon", "sample"]),
)
def test_padded_or_masked_entries_never_change_the_loss_or_its_gradient(seed, mask_shape, float_mask, scale, prediction_type):
    objective = DDPMObjective(DDPMConfig(prediction_type=prediction_type))
    gen = torch.Generator().manual_seed(seed)
    batch = make_batch(seed)
    batch["action_mask"] = torch.rand(mask_shape, generator=gen) < 0.6
    if float_mask:
        batch["action_mask"] = batch["action_mask"].float()  # 0/1 masks work like bool ones
    loss, grads, metrics = loss_and_grads(MIXING_HEAD, objective, batch)

    valid = ~batch["action_is_pad"][..., None] & batch["action_mask"].bool()
    changed = dict(batch, action=torch.where(valid, batch["action"], scale * torch.randn(batch["action"].shape, generator=gen)))
    loss2, grads2, metrics2 = loss_and_grads(MIXING_HEAD, objective, changed)
    assert torch.equal(loss, loss2) and metrics == metrics2
    assert all(torch.equal(g, g2) for g, g2 in zip(grads, grads2))
    assert metrics["valid_fraction"] == pytest.approx(valid.float().mean().item())

    if valid.any():  # and changing a valid entry does change it
        moved = dict(batch, action=torch.where(valid, batch["action"] + 0.5, batch["action"]))
        assert not torch.equal(loss_and_grads(MIXING_HEAD, objective, moved)[0], loss)


def test_gradients_are_finite_and_reach_every_parameter():
    head = small_head(p_drop_attn=0.0)
    loss, grads, metrics = loss_and_grads(head, DDPMObjective(DDPMConfig()), make_batch())
    assert torch.isfinite(loss) and loss > 0
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    assert set(metrics) == {"mse", "valid_fraction"} and all(isinstance(v, float) for v in metrics.values())


def test_an_all_padded_batch_gives_zero_loss_and_zero_gradients():
    batch = dict(make_batch(), action_is_pad=torch.ones(B, SPEC.horizon, dtype=torch.bool))
    loss, grads, metrics = loss_and_grads(small_head(), DDPMObjective(DDPMConfig()), batch)
    assert float(loss) == 0.0 and metrics["valid_fraction"] == 0.0
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_an_action_mask_of_the_wrong_shape_is_named():
    batch = dict(make_batch(), action_mask=torch.ones(B, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"action_mask: shape \(4, 5\) does not broadcast"):
        DDPMObjective(DDPMConfig()).compute_loss(small_head(), batch)


def test_objective_meets_the_protocol_with_diffusion_policys_defaults():
    objective = DDPMObjective(DDPMConfig())
    assert isinstance(objective, Objective) and objective.name == "ddpm"
    assert objective.default_num_steps == 100 and objective.schedule.num_train_timesteps == 100
    c = objective.config
    assert (c.beta_schedule, c.prediction_type, c.clip_sample, c.clip_sample_range) == ("squaredcos_cap_v2", "epsilon", True, 1.0)


def test_config_rejects_more_inference_steps_than_training_steps():
    with pytest.raises(ValueError, match="num_inference_steps: must be <= num_train_timesteps"):
        DDPMConfig(num_inference_steps=200)
    with pytest.raises(ValueError, match="beta_end"):
        DDPMConfig(beta_schedule="linear", beta_start=0.1, beta_end=0.01)


# ----------------------------------------------------------------------------------------------
# sampling


@pytest.mark.parametrize("num_steps, calls", [(None, 100), (100, 100), (10, 10), (1, 1)])
def test_sample_runs_ddpm_for_all_steps_and_ddim_for_fewer(num_steps, calls):
    objective = DDPMObjective(DDPMConfig(prediction_type="sample"))
    x0 = torch.rand(1, SPEC.horizon, SPEC.action_dim) * 2 - 1
    oracle = OracleHead(objective, x0)
    out = objective.sample(oracle, torch.zeros(3, SPEC.n_obs_steps, SPEC.cond_dim), num_steps, torch.Generator().manual_seed(0))
    assert out.shape == (3, SPEC.horizon, SPEC.action_dim) and oracle.calls == calls
    torch.testing.assert_close(out, x0.expand_as(out), rtol=0, atol=1e-5)  # an exact x0 predictor lands on x0


def test_sample_with_an_epsilon_oracle_lands_on_its_chunk():
    objective = DDPMObjective(DDPMConfig())
    x0 = torch.rand(2, SPEC.horizon, SPEC.action_dim) * 2 - 1
    out = objective.sample(OracleHead(objective, x0), torch.zeros(2, SPEC.n_obs_steps, SPEC.cond_dim), 10, None)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


def test_sample_clips_the_predicted_chunk():
    objective = DDPMObjective(DDPMConfig(prediction_type="sample", clip_sample_range=0.5))
    far = torch.full((1, SPEC.horizon, SPEC.action_dim), 3.0)
    out = objective.sample(OracleHead(objective, far), torch.zeros(1, SPEC.n_obs_steps, SPEC.cond_dim), 5, None)
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


@pytest.mark.parametrize("num_steps", [10, 100])
def test_sampling_is_reproducible_from_the_generator(num_steps):
    objective = DDPMObjective(DDPMConfig())
    head = small_head().eval()
    cond = torch.randn(2, SPEC.n_obs_steps, SPEC.cond_dim)
    first = objective.sample(head, cond, num_steps, torch.Generator().manual_seed(3))
    assert torch.equal(first, objective.sample(head, cond, num_steps, torch.Generator().manual_seed(3)))
    assert not torch.allclose(first, objective.sample(head, cond, num_steps, torch.Generator().manual_seed(4)))


def test_ddim_draws_only_the_initial_noise():
    objective = DDPMObjective(DDPMConfig())
    head = small_head().eval()
    cond = torch.randn(2, SPEC.n_obs_steps, SPEC.cond_dim)
    gen = torch.Generator().manual_seed(5)
    out = objective.sample(head, cond, 10, gen)
    one_draw = torch.Generator().manual_seed(5)
    torch.randn(out.shape, generator=one_draw)
    assert torch.equal(gen.get_state(), one_draw.get_state())  # eta 0: nothing drawn after the start
    torch.manual_seed(123)  # and the global RNG plays no part
    assert torch.equal(objective.sample(head, cond, 10, torch.Generator().manual_seed(5)), out)


@pytest.mark.parametrize("training", [True, False])
def test_sampling_leaves_the_heads_mode_alone_and_builds_no_graph(training):
    objective = DDPMObjective(DDPMConfig())
    head = small_head().train(training)
    out = objective.sample(head, torch.randn(1, SPEC.n_obs_steps, SPEC.cond_dim), 2, None)
    assert head.training is training and not out.requires_grad


@pytest.mark.parametrize("num_steps", [0, 101])
def test_out_of_range_step_counts_are_user_errors(num_steps):
    objective = DDPMObjective(DDPMConfig())
    with pytest.raises(UserInputError, match=f"num_steps: ddpm samples with 1 to 100 .* got {num_steps}"):
        objective.sample(small_head(), torch.zeros(1, SPEC.n_obs_steps, SPEC.cond_dim), num_steps, None)

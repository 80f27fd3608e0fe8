"""The DP-T head: shapes, causal masks (as tensors and as behaviour), optimizer groups, config checks."""

import pytest
import torch
from torch import nn

from polx.components import HeadModule, ObsActionSpec
from polx_ddpm_transformer.config import DDPMTransformerConfig
from polx_ddpm_transformer.head import DiffusionTransformer, causal_masks

SPEC = ObsActionSpec(action_dim=3, horizon=6, n_obs_steps=2, cond_dim=5)
VARIANTS = [
    dict(),
    dict(causal_attn=False),
    dict(time_as_cond=False),
    dict(time_as_cond=False, causal_attn=False),
    dict(n_cond_layers=2),
]


def small_head(spec=SPEC, **overrides) -> DiffusionTransformer:
    torch.manual_seed(0)
    config = DDPMTransformerConfig(**{"n_layer": 2, "n_head": 2, "n_emb": 16, "p_drop_attn": 0.0, **overrides})
    return DiffusionTransformer(config, spec).eval()


def inputs(batch=2, spec=SPEC, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, spec.horizon, spec.action_dim, generator=gen)
    cond = torch.randn(batch, spec.n_obs_steps, spec.cond_dim, generator=gen)
    return sample, torch.randint(0, 100, (batch,), generator=gen), cond


@pytest.mark.parametrize("overrides", VARIANTS)
def test_forward_maps_a_chunk_to_a_chunk(overrides):
    head = small_head(**overrides)
    assert isinstance(head, HeadModule) and head.spec == SPEC
    sample, t, cond = inputs()
    out = head(sample, t, cond)
    assert out.shape == sample.shape and torch.isfinite(out).all()


def test_timesteps_may_be_ints_floats_or_one_scalar_for_the_batch():
    head = small_head()
    sample, _, cond = inputs()
    by_int = head(sample, torch.tensor([7, 7]), cond)
    torch.testing.assert_close(head(sample, torch.tensor([7.0, 7.0]), cond), by_int)
    torch.testing.assert_close(head(sample, 7, cond), by_int)
    assert not torch.allclose(head(sample, torch.tensor([7, 60]), cond)[1], by_int[1])  # t matters


def test_wrong_shapes_are_named():
    head = small_head()
    sample, t, cond = inputs()
    with pytest.raises(ValueError, match=r"sample: expected shape \(B, 6, 3\)"):
        head(sample[:, :4], t, cond)
    with pytest.raises(ValueError, match=r"cond: expected shape \(2, 2, 5\)"):
        head(sample, t, cond[:, :1])


def test_causal_masks_shapes_and_pattern():
    tgt, memory = causal_masks(horizon=16, n_obs_steps=2, time_as_cond=True)
    assert tgt.shape == (16, 16) and memory.shape == (16, 3)  # memory: [time, obs_0, obs_1]
    assert tgt.dtype == torch.bool and torch.equal(tgt, torch.ones(16, 16, dtype=torch.bool).triu(1))
    # action 0 sees the time token and obs 0; every later action sees everything
    assert memory[0].tolist() == [False, False, True] and not memory[1:].any()

    tgt, memory = causal_masks(horizon=4, n_obs_steps=3, time_as_cond=False)
    assert tgt.shape == (5, 5) and memory.shape == (5, 3)  # decoder: [time, act_0..act_3]; memory: obs
    assert memory.tolist() == [
        [False, True, True],  # the time token
        [False, True, True],  # action 0: obs 0
        [False, False, True],  # action 1: obs 0..1
        [False, False, False],
        [False, False, False],
    ]


def test_mask_buffers_follow_causal_attn_and_stay_out_of_checkpoints():
    head = small_head()
    assert head.tgt_mask.shape == (6, 6) and head.memory_mask.shape == (6, 3)
    assert "tgt_mask" not in head.state_dict() and "memory_mask" not in head.state_dict()
    off = small_head(causal_attn=False)
    assert off.tgt_mask is None and off.memory_mask is None


@pytest.mark.parametrize("time_as_cond", [True, False])
def test_causal_head_never_looks_at_later_actions_or_later_observations(time_as_cond):
    head = small_head(time_as_cond=time_as_cond)
    sample, t, cond = inputs()
    out = head(sample, t, cond)
    later = sample.clone()
    later[:, 3:] += 5.0  # change actions 3..5
    torch.testing.assert_close(head(later, t, cond)[:, :3], out[:, :3])
    assert not torch.allclose(head(later, t, cond)[:, 3:], out[:, 3:])
    newer_obs = cond.clone()
    newer_obs[:, 1] += 5.0  # change the newest observation: only action 0 must not see it
    moved = head(sample, t, newer_obs)
    torch.testing.assert_close(moved[:, 0], out[:, 0])
    assert not torch.allclose(moved[:, 1:], out[:, 1:])


def test_non_causal_head_mixes_the_whole_chunk():
    head = small_head(causal_attn=False)
    sample, t, cond = inputs()
    later = sample.clone()
    later[:, -1] += 5.0
    assert not torch.allclose(head(later, t, cond)[:, 0], head(sample, t, cond)[:, 0])


@pytest.mark.parametrize("overrides", VARIANTS)
def test_optim_groups_hold_every_parameter_exactly_once(overrides):
    head = small_head(**overrides)
    decay, no_decay = head.get_optim_groups(weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in head.parameters()}
    names = {id(p): n for n, p in head.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {"pos_emb", "cond_pos_emb", "ln_f.weight", "ln_f.bias", "head.bias"} <= {names[id(p)] for p in no_decay["params"]}
    assert {"head.weight", "input_emb.weight", "cond_obs_emb.weight", "decoder.layers.0.self_attn.in_proj_weight",
            "decoder.layers.0.multihead_attn.out_proj.weight", "decoder.layers.1.linear2.weight"} <= decayed
    assert not any(n.endswith("bias") or ".norm" in n for n in decayed)
    torch.optim.AdamW([decay, no_decay], lr=1e-3)  # the groups are what AdamW accepts


def test_optim_groups_refuse_a_parameter_they_cannot_classify():
    head = small_head()
    head.extra = nn.Parameter(torch.zeros(3))  # neither a weight of a known module nor a bias
    with pytest.raises(AssertionError, match="no group: \\['extra'\\]"):
        head.get_optim_groups(0.1)


def test_dropout_is_active_only_in_train_mode():
    head = small_head(p_drop_attn=0.5, p_drop_emb=0.5)
    sample, t, cond = inputs()
    torch.testing.assert_close(head(sample, t, cond), head(sample, t, cond))
    head.train()
    assert not torch.allclose(head(sample, t, cond), head(sample, t, cond))


def test_config_rejects_a_width_the_heads_cannot_split():
    with pytest.raises(ValueError, match=r"n_head: n_emb \(30\) must be divisible by n_head \(4\)"):
        DDPMTransformerConfig(n_emb=30, n_head=4)
    with pytest.raises(ValueError, match="n_emb: must be even"):
        DDPMTransformerConfig(n_emb=3, n_head=1)
    with pytest.raises(ValueError, match="p_drop_attn"):
        DDPMTransformerConfig(p_drop_attn=1.5)


def test_head_without_a_condition_is_refused():
    with pytest.raises(ValueError, match="cond_dim >= 1"):
        DiffusionTransformer(DDPMTransformerConfig(), ObsActionSpec(action_dim=2, horizon=4, n_obs_steps=1, cond_dim=0))


def test_defaults_are_diffusion_policys_pusht_transformer():
    c = DDPMTransformerConfig()
    assert (c.n_layer, c.n_head, c.n_emb, c.p_drop_emb, c.p_drop_attn) == (8, 4, 256, 0.0, 0.3)
    assert (c.causal_attn, c.time_as_cond, c.n_cond_layers) == (True, True, 0)


def test_head_only_parallel_maps_each_action_group_with_its_own_norm_and_output():
    from polx_ddpm_transformer.config import DDPMTransformerConfig
    from polx_ddpm_transformer.head import build_head

    spec = ObsActionSpec(action_dim=5, horizon=4, n_obs_steps=2, cond_dim=3, action_groups=(("left", 0, 2), ("right", 2, 5)))
    torch.manual_seed(0)
    head = build_head(DDPMTransformerConfig(n_emb=16, n_layer=1, n_head=2, action_expert_mode="head_only_parallel"), spec).eval()
    assert [h[1].out_features for h in head.group_heads] == [2, 3]
    sample, cond = torch.randn(2, 4, 5), torch.randn(2, 2, 3)
    out = head(sample, torch.tensor([3, 7]), cond)
    assert out.shape == (2, 4, 5)
    with torch.no_grad():
        head.group_heads[1][1].bias.add_(1.0)  # the right arm's output map moves the right arm's dims alone
    moved = head(sample, torch.tensor([3, 7]), cond)
    assert torch.equal(moved[..., :2], out[..., :2]) and torch.allclose(moved[..., 2:], out[..., 2:] + 1.0)
    assert sum(len(g["params"]) for g in head.get_optim_groups(0.1)) == len(list(head.parameters()))

"""``head.action_expert_mode``: what each factorisation lets one action group's output depend on.

Invariants: in ``split_independent`` a group's outputs never depend on another group's noisy
actions (bit for bit); in ``split_communicating`` and the trunk-sharing modes they do; two heads
with the same weights and inputs agree, and two streams with the same weights and inputs agree;
``cross_group_attention`` is a distribution whose off-diagonal mass is the attention crossing
between groups; every mode trains through the ``imf`` objective's JVP.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.components import ObsActionSpec
from polx_imf_attnres.config import ACTION_EXPERT_MODES, IMFAttnResConfig, IMFConfig
from polx_imf_attnres.head import build_head
from polx_imf_attnres.objective import IMFObjective

SPEC = ObsActionSpec(action_dim=5, horizon=4, n_obs_steps=2, cond_dim=3, action_groups=(("left", 0, 2), ("right", 2, 5)))
EVEN = ObsActionSpec(action_dim=6, horizon=4, n_obs_steps=2, cond_dim=3, action_groups=(("left", 0, 3), ("right", 3, 6)))


def _head(mode: str, spec=SPEC, seed: int = 0, **overrides):
    """A small head in eval mode whose AttnRes mixing is not uniform (random pseudo-queries)."""
    torch.manual_seed(seed)
    head = build_head(IMFAttnResConfig(n_emb=16, n_layer=2, n_head=2, n_kv_head=1, action_expert_mode=mode, **overrides), spec)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.endswith("pseudo_query"):
                p.normal_(0.0, 1.0)
    return head.eval()


HEADS = {mode: _head(mode) for mode in ACTION_EXPERT_MODES}


def _inputs(seed: int, spec=SPEC, B: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, spec.horizon, spec.action_dim, generator=g),
        torch.rand(B, generator=g) * 0.5,
        0.5 + torch.rand(B, generator=g) * 0.5,
        torch.randn(B, spec.n_obs_steps, spec.cond_dim, generator=g),
    )


def _perturbed(z: torch.Tensor, group: int, delta: float) -> torch.Tensor:
    _, start, stop = SPEC.action_groups[group]
    out = z.clone()
    out[..., start:stop] += delta
    return out


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), group=st.integers(0, 1), delta=st.sampled_from([0.3, -2.0, 40.0]))
def test_split_independent_groups_never_see_each_others_actions(seed, group, delta):
    head = HEADS["split_independent"]
    z, r, t, cond = _inputs(seed)
    out, moved = head(z, r, t, cond), head(_perturbed(z, group, delta), r, t, cond)
    _, start, stop = SPEC.action_groups[group]
    other = [i for i in range(SPEC.action_dim) if not start <= i < stop]
    for a, b in ((out.u, moved.u), (out.v, moved.v)):
        assert torch.equal(a[..., other], b[..., other])
        assert not torch.allclose(a[..., start:stop], b[..., start:stop])


@pytest.mark.parametrize("mode", ["shared", "head_only_parallel", "split_communicating"])
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), group=st.integers(0, 1))
def test_modes_that_share_attention_let_a_group_see_the_others_actions(mode, seed, group):
    head = HEADS[mode]
    z, r, t, cond = _inputs(seed)
    out, moved = head(z, r, t, cond), head(_perturbed(z, group, 1.0), r, t, cond)
    _, start, stop = SPEC.action_groups[1 - group]
    assert not torch.allclose(out.u[..., start:stop], moved.u[..., start:stop], atol=1e-7)


@pytest.mark.parametrize("mode", ACTION_EXPERT_MODES)
def test_identical_weights_and_inputs_give_identical_outputs(mode):
    z, r, t, cond = _inputs(7)
    a, b = _head(mode, seed=3)(z, r, t, cond), _head(mode, seed=3)(z, r, t, cond)
    assert torch.equal(a.u, b.u) and torch.equal(a.v, b.v)


@pytest.mark.parametrize("mode", ["split_independent", "split_communicating"])
def test_streams_with_identical_weights_and_inputs_give_identical_outputs(mode):
    head = _head(mode, spec=EVEN)
    head.streams[1].load_state_dict(head.streams[0].state_dict())
    z, r, t, cond = _inputs(5, spec=EVEN)
    z = torch.cat([z[..., :3], z[..., :3]], dim=-1)  # the same actions in both groups
    out = head(z, r, t, cond)
    assert torch.allclose(out.u[..., :3], out.u[..., 3:], atol=1e-6) and torch.allclose(out.v[..., :3], out.v[..., 3:], atol=1e-6)


def test_cross_group_attention_is_a_distribution_that_crosses_groups():
    head = HEADS["split_communicating"]
    attention = head.cross_group_attention(*_inputs(1))
    assert attention.shape == (2, 2, 2)  # (n_layer, query group, key group)
    assert torch.allclose(attention.sum(-1), torch.ones(2, 2), atol=1e-5)
    off_diagonal = attention[:, 0, 1] + attention[:, 1, 0]
    assert torch.all(off_diagonal > 0.05)  # at init, about half the mass goes to the other stream
    with pytest.raises(ValueError, match="only split_communicating attends across groups; this head is split_independent"):
        HEADS["split_independent"].cross_group_attention(*_inputs(1))


@pytest.mark.parametrize("mode", ACTION_EXPERT_MODES)
def test_every_mode_trains_through_the_jvp_and_both_jvp_paths_agree(mode):
    head = _head(mode).train()
    z, _, _, cond = _inputs(2)
    batch = {"action": z, "cond": cond, "action_is_pad": torch.zeros(3, SPEC.horizon, dtype=torch.bool)}
    r, t = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.6, 0.7, 0.3])
    losses = {}
    for impl in ("func", "autograd"):
        objective = IMFObjective(IMFConfig(jvp_impl=impl))
        loss, _ = objective.loss(head, batch, noise=torch.ones_like(z), r=r, t=t)
        losses[impl] = loss
    assert torch.isfinite(losses["func"]) and torch.allclose(losses["func"], losses["autograd"], rtol=1e-4)
    losses["func"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters() if p.requires_grad)


def test_split_modes_need_a_stream_per_group_and_keep_every_parameter_in_one_optimizer_group():
    head = HEADS["split_communicating"]
    assert len(head.streams) == 2 and head.streams[1].sample_emb.in_features == 3
    groups = head.get_optim_groups(0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(head.parameters()))

"""The ``imf`` objective: JVP, compound velocity, masked loss, sampler."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from polx.components import ObsActionSpec, Objective
from polx_imf_attnres.config import IMFAttnResConfig, IMFConfig
from polx_imf_attnres.head import HeadOutput, build_head
from polx_imf_attnres.jvp import time_derivative
from polx_imf_attnres.objective import IMFObjective, build_objective

SPEC = ObsActionSpec(action_dim=3, horizon=6, n_obs_steps=2, cond_dim=5)


def _head(seed=0, **overrides):
    """A small float64 head whose AttnRes mixing is not uniform (random pseudo-queries)."""
    torch.manual_seed(seed)
    config = dict(n_emb=16, n_layer=2, n_head=2, n_kv_head=1)
    head = build_head(IMFAttnResConfig(**{**config, **overrides}), SPEC).double()
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.endswith("pseudo_query"):
                p.normal_(0.0, 1.0)
    return head


HEAD = _head()  # shared, read-only, by the tests that do not train it


def _batch(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "action": torch.randn(B, SPEC.horizon, SPEC.action_dim, generator=g, dtype=torch.float64),
        "cond": torch.randn(B, SPEC.n_obs_steps, SPEC.cond_dim, generator=g, dtype=torch.float64),
        "action_is_pad": torch.zeros(B, SPEC.horizon, dtype=torch.bool),
    }


def _times(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r, t = torch.rand(2, B, generator=g, dtype=torch.float64).sort(dim=0).values
    return r, t


def test_objective_satisfies_the_protocol():
    obj = build_objective(IMFConfig())
    assert isinstance(obj, Objective) and obj.name == "imf" and obj.default_num_steps == 1


def test_r_equal_t_gives_compound_velocity_equal_to_u():
    obj = IMFObjective(IMFConfig())
    z = _batch()["action"]
    cond = _batch()["cond"]
    r, t = _times()
    r_eq = t.clone()
    r_eq[:2] = r[:2]  # two samples with an interval, two without
    vel = obj.velocities(HEAD, z, r_eq, t, cond)
    assert torch.equal(vel.compound[2:], vel.u[2:])
    assert not torch.allclose(vel.compound[:2], vel.u[:2])  # where r < t the JVP term is there
    assert torch.all(vel.du_dt[2:] == 0)


def test_jvp_matches_central_finite_differences():
    z, cond = _batch()["action"], _batch()["cond"]
    r, t = _times()
    v = torch.randn_like(z)

    def u(z_, r_, t_):
        return HEAD(z_, r_, t_, cond).u

    du_dt = time_derivative(u, z, r, t, v, impl="func")
    h = 1e-6  # error ~ h^2 truncation + 1e-16 / h rounding: measured 5e-11 here, |du/dt| up to 0.3
    finite = (u(z + h * v, r, t + h) - u(z - h * v, r, t - h)) / (2 * h)
    assert du_dt.abs().max() > 0.1  # not trivially zero
    torch.testing.assert_close(du_dt, finite, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "overrides", [{}, {"v_head": False}, {"backbone_type": "attnres_block", "attnres_block_size": 3}]
)
def test_func_and_autograd_jvp_agree_on_loss_and_gradients(overrides):
    head = _head(**overrides)
    batch = _batch()
    r, t = _times()
    noise = torch.randn_like(batch["action"])
    results = []
    for impl in ("func", "autograd"):
        head.zero_grad()
        obj = IMFObjective(IMFConfig(jvp_impl=impl))
        vel = obj.velocities(head, batch["action"], r, t, batch["cond"])
        loss, _ = obj.loss(head, batch, noise=noise, r=r, t=t)
        loss.backward()
        results.append((vel.du_dt, loss.detach(), [p.grad.clone() for p in head.parameters()]))
    (du_f, loss_f, grads_f), (du_a, loss_a, grads_a) = results
    torch.testing.assert_close(du_f, du_a)
    torch.testing.assert_close(loss_f, loss_a)
    for g_f, g_a in zip(grads_f, grads_a):
        torch.testing.assert_close(g_f, g_a)


class _NoForwardModeScale(torch.autograd.Function):
    """Doubles its input; old-style (no setup_context, no jvp), so torch.func cannot transform it."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


class _HeadWithoutForwardMode(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.spec = inner, inner.spec

    def forward(self, sample, r, t, cond):
        out = self.inner(sample, r, t, cond)
        return HeadOutput(_NoForwardModeScale.apply(out.u), out.v)


def test_torch_func_failure_falls_back_to_autograd_with_one_warning():
    head = _HeadWithoutForwardMode(HEAD)
    batch = _batch()
    r, t = _times()
    noise = torch.randn_like(batch["action"])
    obj = IMFObjective(IMFConfig(jvp_impl="func"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss_1, _ = obj.loss(head, batch, noise=noise, r=r, t=t)
        loss_2, _ = obj.loss(head, batch, noise=noise, r=r, t=t)
    ours = [w for w in caught if "torch.func.jvp failed" in str(w.message)]
    assert len(ours) == 1 and obj.jvp_impl == "autograd"
    reference, _ = IMFObjective(IMFConfig(jvp_impl="autograd")).loss(head, batch, noise=noise, r=r, t=t)
    torch.testing.assert_close(loss_1, reference)
    torch.testing.assert_close(loss_2, reference)


class _PointwiseHead(nn.Module):
    """Each output entry depends only on the same entry of z (and r, t): masked entries stay apart."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.a = nn.Parameter(torch.linspace(0.5, 1.5, spec.action_dim, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, sample, r, t, cond):
        u = torch.tanh(self.a * sample) + self.b * (t - r)[:, None, None] * sample + cond.mean()
        return HeadOutput(u, 0.5 * u + self.b * t[:, None, None])


@settings(max_examples=30, deadline=None)
@given(
    pad=st.lists(st.booleans(), min_size=6, max_size=6),
    dim_mask=st.lists(st.booleans(), min_size=3, max_size=3),
    weighting=st.sampled_from(["mse", "adaptive"]),
    seed=st.integers(0, 2**16),
)
def test_masked_entries_never_change_the_loss(pad, dim_mask, weighting, seed):
    g = torch.Generator().manual_seed(seed)
    head = _PointwiseHead(SPEC)
    batch = _batch(B=3, seed=seed)
    batch["action_is_pad"] = torch.tensor(pad).expand(3, 6).clone()
    batch["action_is_pad"][0] = False  # one sample with every step valid
    batch["action_mask"] = torch.tensor(dim_mask, dtype=torch.float64).expand(1, 1, 3)
    r, t = _times(B=3, seed=seed)
    noise = torch.randn(batch["action"].shape, generator=g, dtype=torch.float64)
    obj = IMFObjective(IMFConfig(loss_weighting=weighting))
    loss, _ = obj.loss(head, batch, noise=noise, r=r, t=t)

    valid = ~batch["action_is_pad"][..., None] & batch["action_mask"].bool()
    garbage = torch.randn(noise.shape, generator=g, dtype=torch.float64) * 100
    changed = dict(batch, action=torch.where(valid, batch["action"], garbage))
    changed_noise = torch.where(valid, noise, -garbage)
    changed_loss, _ = obj.loss(head, changed, noise=changed_noise, r=r, t=t)
    torch.testing.assert_close(changed_loss, loss, rtol=1e-12, atol=1e-12)
    if valid.any():  # and a valid entry does count
        moved = dict(batch, action=torch.where(valid, batch["action"] + 1, batch["action"]))
        assert not torch.isclose(obj.loss(head, moved, noise=noise, r=r, t=t)[0], loss)


@settings(max_examples=10, deadline=None)
@given(pad_from=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_masked_action_values_never_reach_the_loss_through_attention(pad_from, seed):
    g = torch.Generator().manual_seed(seed)
    batch = _batch(B=2, seed=seed)
    batch["action_is_pad"][:, pad_from:] = True
    r, t = _times(B=2, seed=seed)
    noise = torch.randn(batch["action"].shape, generator=g, dtype=torch.float64)
    obj = IMFObjective(IMFConfig())
    loss, _ = obj.loss(HEAD, batch, noise=noise, r=r, t=t)
    changed = batch["action"].clone()
    changed[:, pad_from:] = 50 * torch.randn(changed[:, pad_from:].shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(obj.loss(HEAD, dict(batch, action=changed), noise=noise, r=r, t=t)[0], loss)


@pytest.mark.parametrize("weighting", ["mse", "adaptive"])
def test_batch_permutation_with_fixed_noise_does_not_change_the_loss(weighting):
    obj = IMFObjective(IMFConfig(loss_weighting=weighting))
    batch = _batch(B=5)
    batch["action_is_pad"][1, 3:] = True
    r, t = _times(B=5)
    t[4] = r[4]
    noise = torch.randn_like(batch["action"])
    loss, _ = obj.loss(HEAD, batch, noise=noise, r=r, t=t)
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = {k: v[perm] for k, v in batch.items()}
    loss_p, _ = obj.loss(HEAD, permuted, noise=noise[perm], r=r[perm], t=t[perm])
    torch.testing.assert_close(loss_p, loss, rtol=1e-10, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    scale=st.floats(0.01, 10.0),
    weighting=st.sampled_from(["mse", "adaptive"]),
    sampler=st.sampled_from(["logit_normal", "uniform"]),
    seed=st.integers(0, 2**16),
)
def test_loss_is_nonnegative_with_finite_gradients(scale, weighting, sampler, seed):
    torch.manual_seed(seed)
    batch = _batch(B=4, seed=seed)
    batch["action"] = batch["action"] * scale
    obj = IMFObjective(IMFConfig(loss_weighting=weighting, time_sampler=sampler))
    HEAD.zero_grad()
    loss, metrics = obj.compute_loss(HEAD, batch)
    loss.backward()
    assert loss.item() >= 0 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in HEAD.parameters() if p.grad is not None)
    assert set(metrics) >= {"loss", "loss_u", "loss_v"} and all(isinstance(v, float) for v in metrics.values())
    assert metrics["loss"] == pytest.approx(metrics["loss_u"] + metrics["loss_v"])
    HEAD.zero_grad()


def test_fully_padded_batch_gives_zero_loss():
    batch = _batch()
    batch["action_is_pad"][:] = True
    for weighting in ("mse", "adaptive"):
        loss, _ = IMFObjective(IMFConfig(loss_weighting=weighting)).compute_loss(HEAD, batch)
        assert loss.item() == 0.0


def test_time_sampler_draws_ordered_times_with_the_configured_share_of_r_equal_t():
    g = torch.Generator().manual_seed(0)
    r, t = IMFObjective(IMFConfig(r_equals_t_ratio=0.25)).sample_times(400, generator=g)
    assert torch.all(r <= t) and torch.all(r >= 0) and torch.all(t <= 1)
    assert int((r == t).sum()) == 100
    # with no r = t, the pooled draws are the logit-normal samples: median sigmoid(-0.4) ~ 0.401
    r, t = IMFObjective(IMFConfig(r_equals_t_ratio=0.0)).sample_times(20000, generator=g)
    assert torch.cat([r, t]).median().item() == pytest.approx(0.401, abs=0.01)
    assert (r == t).sum() == 0
    r, t = IMFObjective(IMFConfig(time_sampler="uniform", r_equals_t_ratio=0.0)).sample_times(20000, generator=g)
    assert torch.cat([r, t]).median().item() == pytest.approx(0.5, abs=0.01)


def _count_calls(head):
    calls = []
    head.register_forward_hook(lambda mod, args, out: calls.append(args[2].clone()))  # record t
    return calls


def test_one_step_sampling_calls_the_head_once():
    head = _head()
    calls = _count_calls(head)
    cond = _batch(B=3)["cond"]
    obj = build_objective(IMFConfig())
    x = obj.sample(head, cond, None, torch.Generator().manual_seed(0))
    assert len(calls) == 1 and torch.all(calls[0] == 1.0)
    assert x.shape == (3, SPEC.horizon, SPEC.action_dim) and not x.requires_grad
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        expected = z - head(z, torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), cond).u
    torch.testing.assert_close(x, expected)


def test_multi_step_sampling_walks_from_one_to_zero():
    head = _head()
    calls = _count_calls(head)
    obj = build_objective(IMFConfig())
    x = obj.sample(head, _batch(B=2)["cond"], 4, torch.Generator().manual_seed(0))
    assert x.shape == (2, SPEC.horizon, SPEC.action_dim)
    assert [round(c[0].item(), 6) for c in calls] == [1.0, 0.75, 0.5, 0.25]
    with pytest.raises(ValueError, match="num_steps"):
        obj.sample(head, _batch(B=2)["cond"], 0, None)


@pytest.mark.parametrize("train", [True, False])
def test_sampling_is_reproducible_and_leaves_the_mode_alone(train):
    head = _head(dropout=0.1)
    head.train(train)
    obj = build_objective(IMFConfig())
    cond = _batch(B=2)["cond"]
    a = obj.sample(head, cond, 1, torch.Generator().manual_seed(7))
    assert head.training == train
    if not train:
        torch.testing.assert_close(a, obj.sample(head, cond, 1, torch.Generator().manual_seed(7)))


# ---------------------------------------------------------------------------------------------
# objective.variant=reference: the MeanFlow paper's semantics


@settings(max_examples=25, deadline=None)
@given(batch_size=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_reference_times_are_sorted_uniform_draws_without_forced_equality(batch_size, seed):
    obj = IMFObjective(IMFConfig(variant="reference", r_equals_t_ratio=1.0))  # the ratio is ignored
    g = torch.Generator().manual_seed(seed)
    r, t = obj.sample_times(batch_size, generator=g)
    g = torch.Generator().manual_seed(seed)
    draws = torch.rand(2, batch_size, generator=g)
    assert torch.equal(r, draws.min(dim=0).values) and torch.equal(t, draws.max(dim=0).values)
    assert bool((r <= t).all())


def test_reference_loss_is_the_compound_mse_alone_and_ignores_the_v_head():
    head = _head(v_head=True)
    batch = _batch()
    r, t = _times()
    noise = torch.randn_like(batch["action"], generator=torch.Generator().manual_seed(1))
    obj = IMFObjective(IMFConfig(variant="reference"))
    loss, metrics = obj.loss(head, batch, noise=noise, r=r, t=t)
    assert set(metrics) == {"loss", "loss_u"}
    # V built with the boundary tangent u(z, t, t), as a head without a v-head gets it
    x = batch["action"]
    z = (1 - t)[:, None, None] * x + t[:, None, None] * noise
    with torch.no_grad():
        tangent = head(z, t, t, batch["cond"]).u
    u_fn = lambda z_, r_, t_: head(z_, r_, t_, batch["cond"]).u  # noqa: E731
    du_dt = time_derivative(u_fn, z, r, t, tangent, impl="autograd")
    expected = (u_fn(z, r, t) + (t - r)[:, None, None] * du_dt - (noise - x)).pow(2).mean()
    assert torch.allclose(loss, expected, rtol=1e-9, atol=1e-12)
    loss.backward()
    assert head.v_out.weight.grad is None  # the v-head takes no part
    assert head.u_out.weight.grad is not None and torch.isfinite(head.u_out.weight.grad).all()

"""AttnRes operator and backbone, and the head built on them."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.components import HeadModule, ObsActionSpec
from polx_imf_attnres.attnres import AttnResOperator, AttnResTransformerBackbone
from polx_imf_attnres.config import IMFAttnResConfig
from polx_imf_attnres.head import IMFAttnResHead, build_head
from polx_imf_attnres.layers import GroupedQuerySelfAttention, RMSNormNoWeight, precompute_rope_freqs

SPEC = ObsActionSpec(action_dim=3, horizon=6, n_obs_steps=2, cond_dim=5)


@settings(max_examples=25, deadline=None)
@given(n_sources=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_zero_initialised_attnres_mixes_sources_uniformly(n_sources, seed):
    g = torch.Generator().manual_seed(seed)
    values = [torch.randn(2, 3, 8, generator=g, dtype=torch.float64) * (i + 1) for i in range(n_sources)]
    op = AttnResOperator(8).double()
    weights = op.scores(values).softmax(dim=0)
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / n_sources))
    torch.testing.assert_close(op(values), torch.stack(values).mean(dim=0))


def test_attnres_weights_follow_the_pseudo_query_over_normalised_sources():
    op = AttnResOperator(4).double()
    big_other = torch.tensor([0.0, 100.0, 0.0, 0.0], dtype=torch.float64).expand(1, 1, 4)
    aligned = torch.tensor([0.1, 0.0, 0.0, 0.0], dtype=torch.float64).expand(1, 1, 4)
    with torch.no_grad():
        op.pseudo_query.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    weights = op.scores([big_other, aligned]).softmax(dim=0)[:, 0, 0]
    # keys are RMS-normalised: the small source aligned with the query wins despite its size
    assert weights[1] > 0.99
    torch.testing.assert_close(op([big_other, aligned]), weights[0] * big_other + weights[1] * aligned)


def _backbone(backbone_type, block_size=4, seed=0):
    torch.manual_seed(seed)
    bb = AttnResTransformerBackbone(
        n_emb=16, n_layer=3, n_head=2, n_kv_head=1, ffn_hidden=32, backbone_type=backbone_type, block_size=block_size
    ).double()
    with torch.no_grad():  # non-uniform mixing, so that a wrong source list shows
        for p in bb.parameters():
            if p.ndim == 1 and p.shape == (16,) and not torch.all(p == 1):
                p.normal_(0.0, 1.0)
    return bb


def _naive_attnres(bb, x, cos, sin):
    """AttnRes written from the definition: list the raw outputs, form block sums by index."""
    k = bb.block_size
    outs = []

    def sources(j):
        done = j // k
        blocks = [sum(outs[b * k : (b + 1) * k]) for b in range(done)]
        partial = [sum(outs[done * k : j])] if j % k else []
        return [x] + blocks + partial

    for j, sub in enumerate(bb.sublayers):
        h = sub.mix(sources(j))  # the operator scoring its own sources
        is_attn = isinstance(sub.body, GroupedQuerySelfAttention)
        outs.append(sub(h, cos=cos, sin=sin, attn_mask=None) if is_attn else sub(h))
    return bb.out_mix(sources(len(bb.sublayers)))


@pytest.mark.parametrize("backbone_type,block_size", [("attnres_full", 1), ("attnres_block", 2), ("attnres_block", 4)])
def test_backbone_matches_the_definition(backbone_type, block_size):
    bb = _backbone(backbone_type, block_size)
    assert all(sub.mix.pseudo_query.abs().sum() > 0 for sub in bb.sublayers)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    cos, sin = precompute_rope_freqs(8, 5, dtype=torch.float64)
    torch.testing.assert_close(bb(x, cos, sin), _naive_attnres(bb, x, cos, sin))


@pytest.mark.parametrize("backbone_type,block_size,expected", [
    ("attnres_full", 1, [1, 2, 3, 4, 5, 6, 7]),  # the embedding plus every earlier output
    ("attnres_block", 2, [1, 2, 2, 3, 3, 4, 4]),  # embedding, finished blocks, the partial block
    ("attnres_block", 4, [1, 2, 2, 2, 2, 3, 3]),
])  # fmt: skip
def test_number_of_sources_each_mixer_sees(backbone_type, block_size, expected):
    bb = _backbone(backbone_type, block_size)
    seen = []
    for mixer in [sub.mix for sub in bb.sublayers] + [bb.out_mix]:
        mixer.register_forward_pre_hook(lambda mod, args: seen.append(len(args[0])))
    cos, sin = precompute_rope_freqs(8, 5, dtype=torch.float64)
    bb(torch.randn(1, 5, 16, dtype=torch.float64), cos, sin)
    assert seen == expected


def test_vanilla_backbone_is_a_prenorm_residual_stack():
    bb = _backbone("vanilla")
    assert bb.out_mix is None and all(sub.mix is None for sub in bb.sublayers)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    cos, sin = precompute_rope_freqs(8, 5, dtype=torch.float64)
    expected = x
    for sub in bb.sublayers:
        body_in = sub.norm(expected)
        is_attn = isinstance(sub.body, GroupedQuerySelfAttention)
        expected = expected + (sub.body(body_in, cos, sin) if is_attn else sub.body(body_in))
    torch.testing.assert_close(bb(x, cos, sin), expected)


def _head(**overrides) -> IMFAttnResHead:
    torch.manual_seed(0)
    return build_head(IMFAttnResConfig(n_emb=16, n_layer=2, n_head=2, n_kv_head=1, **overrides), SPEC).double()


def _inputs(B=3):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(B, SPEC.horizon, SPEC.action_dim, generator=g, dtype=torch.float64),
        torch.rand(B, generator=g, dtype=torch.float64) * 0.5,
        0.5 + torch.rand(B, generator=g, dtype=torch.float64) * 0.5,
        torch.randn(B, SPEC.n_obs_steps, SPEC.cond_dim, generator=g, dtype=torch.float64),
    )


@pytest.mark.parametrize("overrides", [
    {},
    {"backbone_type": "attnres_block", "attnres_block_size": 3},
    {"backbone_type": "vanilla"},
    {"time_as_cond": False, "n_cond_layers": 1, "causal_attn": True},
])  # fmt: skip
def test_head_outputs_u_and_v(overrides):
    head = _head(**overrides)
    assert isinstance(head, HeadModule) and head.spec == SPEC
    out = head(*_inputs())
    assert out.u.shape == out.v.shape == (3, SPEC.horizon, SPEC.action_dim)
    assert torch.isfinite(out.u).all() and not torch.equal(out.u, out.v)
    u, v = out  # a plain (u, v) tuple as well
    assert u is out.u


def test_head_without_v_head_returns_none_for_v():
    head = _head(v_head=False)
    assert head.v_out is None
    u, v = head(*_inputs())
    assert v is None and u.shape == (3, SPEC.horizon, SPEC.action_dim)


def test_head_depends_on_r_t_and_cond_and_rejects_wrong_shapes():
    head = _head()
    z, r, t, cond = _inputs()
    base = head(z, r, t, cond).u
    assert not torch.allclose(base, head(z, r + 0.1, t, cond).u)
    assert not torch.allclose(base, head(z, r, t - 0.1, cond).u)
    assert not torch.allclose(base, head(z, r, t, cond + 1).u)
    with pytest.raises(ValueError, match="horizon 6"):
        head(z[:, :4], r, t, cond)


@pytest.mark.parametrize("causal", [True, False])
def test_causal_attention_hides_later_sample_tokens(causal):
    head = _head(causal_attn=causal)
    z, r, t, cond = _inputs()
    changed = z.clone()
    changed[:, 4:] += 1.0  # perturb the last two steps
    early = slice(0, 4)
    same = torch.allclose(head(z, r, t, cond).u[:, early], head(changed, r, t, cond).u[:, early])
    assert same == causal


def test_optim_groups_hold_every_parameter_once():
    head = _head(n_cond_layers=1)
    decay, no_decay = head.get_optim_groups(weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in head.parameters()}
    no_decay_ids = {id(p) for p in no_decay["params"]}
    names = {id(p): n for n, p in head.named_parameters()}
    for p in no_decay["params"]:
        assert p.ndim == 1, names[id(p)]  # norms, pseudo-queries, biases
    for name, p in head.named_parameters():
        if name.endswith("pseudo_query") or "norm" in name or name.endswith("bias"):
            assert id(p) in no_decay_ids, name
    assert all(p.ndim == 2 for p in decay["params"])


def test_config_rejects_inconsistent_heads():
    with pytest.raises(ValueError, match="n_kv_head"):
        IMFAttnResConfig(n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="n_head"):
        IMFAttnResConfig(n_emb=30, n_head=4)
    with pytest.raises(ValueError, match="backbone_type"):
        IMFAttnResConfig(backbone_type="resnet")


def test_key_norm_is_parameter_free():
    assert isinstance(AttnResOperator(4).key_norm, RMSNormNoWeight)
    assert [n for n, _ in AttnResOperator(4).named_parameters()] == ["pseudo_query"]

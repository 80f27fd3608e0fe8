"""Transformer building blocks against explicit references."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx_imf_attnres.layers import (
    GroupedQuerySelfAttention,
    RMSNorm,
    RMSNormNoWeight,
    SwiGLUFFN,
    apply_rope,
    default_ffn_hidden,
    precompute_rope_freqs,
)


def test_rms_norms_match_the_formula():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(RMSNormNoWeight()(x), expected)
    norm = RMSNorm(8).double()
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 9.0))
    torch.testing.assert_close(norm(x), expected * torch.arange(1.0, 9.0, dtype=torch.float64))
    assert list(dict(RMSNormNoWeight().named_parameters())) == []


def _rotate(x: torch.Tensor, pos: int, head_dim: int, seq_len: int = 64) -> torch.Tensor:
    cos, sin = precompute_rope_freqs(head_dim, seq_len, dtype=torch.float64)
    return apply_rope(x[None], cos[pos : pos + 1], sin[pos : pos + 1])[0]


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 30), n=st.integers(0, 30), shift=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_rope_scores_depend_only_on_the_relative_offset(m, n, shift, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 16, generator=g, dtype=torch.float64)
    score = _rotate(q, m, 16) @ _rotate(k, n, 16)
    shifted = _rotate(q, m + shift, 16) @ _rotate(k, n + shift, 16)
    assert score.item() == pytest.approx(shifted.item(), abs=1e-9)
    assert _rotate(q, m, 16).norm().item() == pytest.approx(q.norm().item())  # a rotation keeps lengths


def test_rope_rotates_pairs_of_channels_by_position_times_frequency():
    x = torch.zeros(4, dtype=torch.float64)
    x[0] = 1.0  # channel 0 pairs with channel 2 (head_dim 4); its frequency is base^0 = 1
    out = _rotate(x, 3, 4)
    expected = torch.tensor([math.cos(3), 0.0, math.sin(3), 0.0], dtype=torch.float64)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def _reference_attention(attn: GroupedQuerySelfAttention, x, cos, sin, allowed=None):
    """softmax(QK^T / sqrt(d)) V per head, written out; key/value head h // group serves query head h."""
    B, L, _ = x.shape
    H, Hkv, hd = attn.n_head, attn.n_kv_head, attn.head_dim
    w_q, w_k, w_v = attn.qkv_proj.weight.split([H * hd, Hkv * hd, Hkv * hd])
    q = (x @ w_q.T).view(B, L, H, hd)
    k = (x @ w_k.T).view(B, L, Hkv, hd)
    v = (x @ w_v.T).view(B, L, Hkv, hd)
    heads = []
    for h in range(H):
        kv = h // (H // Hkv)
        qh = apply_rope(q[:, :, h], cos, sin)  # (B, L, hd)
        kh = apply_rope(k[:, :, kv], cos, sin)
        scores = qh @ kh.transpose(1, 2) / math.sqrt(hd)  # (B, L, L)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        heads.append(torch.softmax(scores, dim=-1) @ v[:, :, kv])
    return torch.cat(heads, dim=-1) @ attn.out_proj.weight.T


@pytest.mark.parametrize("n_head,n_kv_head", [(1, 1), (4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_explicit_softmax_reference(n_head, n_kv_head, masked):
    torch.manual_seed(0)
    attn = GroupedQuerySelfAttention(32, n_head, n_kv_head).double()
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    cos, sin = precompute_rope_freqs(32 // n_head, 7, dtype=torch.float64)
    allowed = torch.ones(7, 7, dtype=torch.bool).tril() if masked else None
    torch.testing.assert_close(attn(x, cos, sin, allowed), _reference_attention(attn, x, cos, sin, allowed))


def test_gqa_shares_key_value_heads():
    attn = GroupedQuerySelfAttention(32, 4, 2)
    assert attn.qkv_proj.weight.shape == ((4 + 2 * 2) * 8, 32)  # 4 query heads, 2 key and 2 value heads of 8
    with pytest.raises(ValueError, match="n_kv_head"):
        GroupedQuerySelfAttention(32, 4, 3)


def test_swiglu_matches_the_formula():
    torch.manual_seed(0)
    ffn = SwiGLUFFN(8, 16).double()
    x = torch.randn(3, 8, dtype=torch.float64)
    w1, w3 = ffn.gate_up.weight.split([16, 16])
    expected = (torch.nn.functional.silu(x @ w1.T) * (x @ w3.T)) @ ffn.down.weight.T
    torch.testing.assert_close(ffn(x), expected)
    assert default_ffn_hidden(256) == 704 and default_ffn_hidden(96) == 256

"""Transformer building blocks: RMS norms, rotary embeddings, grouped-query attention, SwiGLU.

Everything here is differentiable in forward mode as well as reverse mode (the ``imf`` objective
takes a JVP through the whole head), so no fused kernel is hard-wired: attention goes through
``F.scaled_dot_product_attention``, whose backend the caller may pin (the JVP path pins MATH).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNormNoWeight(nn.Module):
    """``x / rms(x)`` over the last dimension, without a learned scale."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, x.shape[-1:], eps=self.eps)


class RMSNorm(nn.Module):
    """RMS normalisation with a learned per-channel scale (initialised to one)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def precompute_rope_freqs(
    head_dim: int, seq_len: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables ``(cos, sin)``, each (seq_len, head_dim), in the rotate-half layout.

    Channel ``i`` pairs with channel ``i + head_dim/2``; the pair at position ``p`` turns by angle
    ``p * base^(-2i/head_dim)``. The first half of ``sin`` is negated so ``apply_rope`` is one roll.
    """
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (head_dim/2,)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)  # (L, head_dim/2)
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1)
    sin = torch.cat([-angles.sin(), angles.sin()], dim=-1)
    return cos.to(dtype), sin.to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., L, head_dim) by its position's angles; ``cos``/``sin`` (L, head_dim) from above.

    Per pair ``(a, b) = (x_i, x_{i+h})``: ``(a cos - b sin, b cos + a sin)``.
    """
    swapped = x.roll(x.shape[-1] // 2, dims=-1)  # (b, a) in place of (a, b)
    return torch.addcmul(x * cos, swapped, sin)


class GroupedQuerySelfAttention(nn.Module):
    """Self-attention with ``n_head`` query heads sharing ``n_kv_head`` key/value heads, with RoPE."""

    def __init__(self, n_emb: int, n_head: int, n_kv_head: int, dropout: float = 0.0):
        super().__init__()
        if n_emb % n_head or n_head % n_kv_head:
            raise ValueError(
                f"need n_head | n_emb and n_kv_head | n_head; got n_emb={n_emb}, n_head={n_head}, n_kv_head={n_kv_head}"
            )
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.head_dim = n_emb // n_head
        self.qkv_proj = nn.Linear(n_emb, (n_head + 2 * n_kv_head) * self.head_dim, bias=False)
        self.out_proj = nn.Linear(n_head * self.head_dim, n_emb, bias=False)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` (B, L, D) -> (B, L, D); ``attn_mask`` (L, L) bool, True where attending is allowed."""
        q, k, v = self.project(x, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, hd)
        return self.merge(y)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, L, D) -> rotated ``q``, ``k`` and ``v``, each (B, n_head, L, head_dim) (kv heads repeated)."""
        B, L, _ = x.shape
        qkv = self.qkv_proj(x).view(B, L, self.n_head + 2 * self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k, v = qkv.split([self.n_head, self.n_kv_head, self.n_kv_head], dim=1)  # (B, H or Hkv, L, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.n_kv_head != self.n_head:  # each key/value head serves n_head / n_kv_head query heads
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return q, k, v

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """Attention output (B, H, L, hd) -> (B, L, D) through the output projection."""
        B, _, L, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(B, L, self.n_head * self.head_dim))


def joint_attention(
    attns: list[GroupedQuerySelfAttention],
    xs: list[torch.Tensor],
    cos: torch.Tensor,
    sin: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    probe: list | None = None,
) -> list[torch.Tensor]:
    """Several token streams, each with its own attention weights, attending over all streams' tokens.

    Stream ``g``'s queries see the keys and values of every stream (its own projections of its own
    tokens): the mixture-of-transformers pattern of per-arm action experts that still talk. Every
    stream has the same ``L`` positions (rotary angles by position within a stream, so a token
    meets its counterpart in another stream at relative offset 0). ``attn_mask`` (L, L) applies
    within and across streams alike. ``probe``: a list that receives each stream's attention
    probabilities (B, H, L, G * L) (explicit softmax; for diagnostics, not training).
    """
    projected = [attn.project(x, cos, sin) for attn, x in zip(attns, xs)]
    k = torch.cat([p[1] for p in projected], dim=2)  # (B, H, G * L, hd)
    v = torch.cat([p[2] for p in projected], dim=2)
    mask = attn_mask.repeat(1, len(xs)) if attn_mask is not None else None  # (L, G * L)
    outs = []
    for attn, (q, _, _) in zip(attns, projected):
        if probe is not None:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probe.append(scores.softmax(dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=attn.dropout if attn.training else 0.0)
        outs.append(attn.merge(y))
    return outs


class SwiGLUFFN(nn.Module):
    """``W2 (silu(W1 x) * W3 x)``: the gated feed-forward of LLaMA-style transformers."""

    def __init__(self, n_emb: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(n_emb, 2 * hidden, bias=False)  # W1 and W3 in one matmul
        self.down = nn.Linear(hidden, n_emb, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


def default_ffn_hidden(n_emb: int) -> int:
    """8/3 * n_emb rounded up to a multiple of 64: a SwiGLU with the parameters of a 4x GELU MLP."""
    return 64 * math.ceil(8 * n_emb / 3 / 64)

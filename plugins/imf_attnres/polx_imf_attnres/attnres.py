"""Attention Residuals (AttnRes): each sublayer's input is a learned softmax mixture over depth.

A pre-norm transformer adds every sublayer's output to one residual stream with weight one.
AttnRes keeps the outputs apart as *sources* (the embedding and each earlier sublayer's raw output)
and gives sublayer ``l`` the input ``h_l = sum_i alpha_i v_i`` with
``alpha = softmax_i(w_l . RMSNorm(v_i))``: ``w_l`` is a learned pseudo-query, one per sublayer,
initialised to zero so that mixing starts uniform. The block variant sums the outputs within
blocks of ``block_size`` sublayers and mixes over the block sums (plus the running partial sum of
the current block), which bounds the number of sources.

Because pseudo-queries do not depend on the input, the backbone scores each finished source
against every pseudo-query at once, when the source is made (one matmul), instead of once per
later sublayer.
"""

from __future__ import annotations

import torch
from torch import nn

from polx_imf_attnres.layers import GroupedQuerySelfAttention, RMSNorm, RMSNormNoWeight, SwiGLUFFN, joint_attention


class AttnResOperator(nn.Module):
    """Mix S sources, each (B, L, D), into one input (B, L, D) with softmax-over-depth weights."""

    def __init__(self, dim: int):
        super().__init__()
        self.pseudo_query = nn.Parameter(torch.zeros(dim))  # zero: every source weighs 1/S at init
        self.key_norm = RMSNormNoWeight()

    def scores(self, values: list[torch.Tensor]) -> torch.Tensor:
        """Logits (S, B, L): the pseudo-query against each RMS-normalised source."""
        return torch.stack([self.key_norm(v) @ self.pseudo_query for v in values])

    def forward(self, values: list[torch.Tensor], scores: torch.Tensor | None = None) -> torch.Tensor:
        """``scores`` (S, B, L), when the caller computed ``self.scores(values)`` more cheaply."""
        weights = (self.scores(values) if scores is None else scores).softmax(dim=0).unsqueeze(-1)  # (S, B, L, 1)
        # a running sum of the un-normalised sources: stacking S copies first is several times
        # slower on CPU (allocating the large temporary dominates)
        mixed = weights[0] * values[0]
        for w, v in zip(weights[1:], values[1:]):
            mixed = torch.addcmul(mixed, w, v)
        return mixed  # (B, L, D)


class AttnResSubLayer(nn.Module):
    """One pre-norm sublayer (attention or FFN) and, with AttnRes, the operator that builds its input."""

    def __init__(self, dim: int, body: nn.Module, dropout: float = 0.0, attnres: bool = True):
        super().__init__()
        self.mix = AttnResOperator(dim) if attnres else None
        self.norm = RMSNorm(dim)
        self.body = body
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, **body_kwargs: torch.Tensor | None) -> torch.Tensor:
        """The raw output ``f(norm(h))`` (B, L, D) for the sublayer input ``h`` (B, L, D)."""
        return self.drop(self.body(self.norm(h), **body_kwargs))


class AttnResTransformerBackbone(nn.Module):
    """``n_layer`` x (attention, SwiGLU FFN) sublayers joined by AttnRes or by plain residuals.

    ``backbone_type``: ``attnres_full`` (mix over every earlier output), ``attnres_block`` (mix over
    block sums of ``block_size`` sublayers) or ``vanilla`` (``x + f(norm(x))``, for ablations).
    The output (a final mixture over all sources with AttnRes) is not normalised; the head does that.
    """

    def __init__(
        self,
        *,
        n_emb: int,
        n_layer: int,
        n_head: int,
        n_kv_head: int,
        ffn_hidden: int,
        backbone_type: str = "attnres_full",
        block_size: int = 4,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        if backbone_type not in ("attnres_full", "attnres_block", "vanilla"):
            raise ValueError(f"backbone_type must be attnres_full, attnres_block or vanilla; got {backbone_type!r}")
        self.backbone_type = backbone_type
        self.block_size = 1 if backbone_type == "attnres_full" else block_size  # full = blocks of one sublayer
        attnres = backbone_type != "vanilla"
        self.sublayers = nn.ModuleList()
        for _ in range(n_layer):
            attn = GroupedQuerySelfAttention(n_emb, n_head, n_kv_head, dropout=attn_dropout)
            self.sublayers.append(AttnResSubLayer(n_emb, attn, dropout, attnres))
            self.sublayers.append(AttnResSubLayer(n_emb, SwiGLUFFN(n_emb, ffn_hidden), dropout, attnres))
        self.out_mix = AttnResOperator(n_emb) if attnres else None

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` (B, L, D) token embeddings -> (B, L, D); rotary ``cos``/``sin`` (L, head_dim)."""

        depth = self.depth_state(x)
        for j, sub in enumerate(self.sublayers):
            h = depth.input(j)
            out = sub(h, cos=cos, sin=sin, attn_mask=attn_mask) if isinstance(sub.body, GroupedQuerySelfAttention) else sub(h)
            depth.add(j, out)
        return depth.output()

    def depth_state(self, x: torch.Tensor) -> "DepthState":
        """The residual (vanilla) or AttnRes source state of one pass over the embeddings ``x``."""
        return DepthState(self, x)


class DepthState:
    """What one backbone pass carries from sublayer to sublayer, so several backbones can run in lockstep.

    ``input(j)`` is sublayer ``j``'s input, ``add(j, out)`` records its raw output, ``output()`` is the
    backbone's result. Vanilla: one residual stream. AttnRes: the finished sources (the embedding,
    then one sum per finished block), every mixer's logit for each (pseudo-queries do not depend on
    the input, so a source is scored against all of them once, when it is made), and the current
    block's partial sum, scored only for the mixer that reads it now.
    """

    def __init__(self, backbone: AttnResTransformerBackbone, x: torch.Tensor):
        self.vanilla = backbone.backbone_type == "vanilla"
        self.block_size = backbone.block_size
        self.residual = x
        if self.vanilla:
            return
        self.mixers = [sub.mix for sub in backbone.sublayers] + [backbone.out_mix]  # mixer j builds sublayer j's input
        self.queries = torch.stack([m.pseudo_query for m in self.mixers], dim=1)  # (D, n_mixers)
        self.key_norm = backbone.out_mix.key_norm
        self.blocks = [x]
        self.block_scores = [self.key_norm(x) @ self.queries]  # (B, L, n_mixers) each
        self.partial: torch.Tensor | None = None  # sum of the current block's outputs so far

    def input(self, j: int) -> torch.Tensor:
        if self.vanilla:
            return self.residual
        scores = [s[..., j] for s in self.block_scores]
        values = self.blocks
        if self.partial is not None:  # still changing, so scored only for the mixer that reads it now
            scores, values = scores + [self.key_norm(self.partial) @ self.queries[:, j]], self.blocks + [self.partial]
        return self.mixers[j](values, torch.stack(scores))

    def add(self, j: int, out: torch.Tensor) -> None:
        if self.vanilla:
            self.residual = self.residual + out
            return
        self.partial = out if self.partial is None else self.partial + out
        if (j + 1) % self.block_size == 0:
            self.blocks.append(self.partial)
            self.block_scores.append(self.key_norm(self.partial) @ self.queries)
            self.partial = None

    def output(self) -> torch.Tensor:
        return self.residual if self.vanilla else self.input(len(self.mixers) - 1)


def lockstep_forward(
    backbones: list[AttnResTransformerBackbone],
    xs: list[torch.Tensor],
    cos: torch.Tensor,
    sin: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    probe: list | None = None,
) -> list[torch.Tensor]:
    """Backbones of one architecture, one token stream each, whose attention sublayers attend jointly
    over all streams (``joint_attention``); FFNs and depth mixing stay per stream."""
    states = [b.depth_state(x) for b, x in zip(backbones, xs)]
    for j, subs in enumerate(zip(*(b.sublayers for b in backbones))):
        hs = [state.input(j) for state in states]
        if isinstance(subs[0].body, GroupedQuerySelfAttention):
            ys = joint_attention([s.body for s in subs], [s.norm(h) for s, h in zip(subs, hs)], cos, sin, attn_mask, probe)
            outs = [s.drop(y) for s, y in zip(subs, ys)]
        else:
            outs = [s(h) for s, h in zip(subs, hs)]
        for state, out in zip(states, outs):
            state.add(j, out)
    return [state.output() for state in states]

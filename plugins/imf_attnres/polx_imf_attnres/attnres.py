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

from polx_imf_attnres.layers import GroupedQuerySelfAttention, RMSNorm, RMSNormNoWeight, SwiGLUFFN


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

        def run(sub: AttnResSubLayer, h: torch.Tensor) -> torch.Tensor:
            if isinstance(sub.body, GroupedQuerySelfAttention):
                return sub(h, cos=cos, sin=sin, attn_mask=attn_mask)
            return sub(h)

        if self.backbone_type == "vanilla":
            for sub in self.sublayers:
                x = x + run(sub, x)
            return x

        mixers = [sub.mix for sub in self.sublayers] + [self.out_mix]  # mixer j builds sublayer j's input
        queries = torch.stack([m.pseudo_query for m in mixers], dim=1)  # (D, n_mixers)
        key_norm = self.out_mix.key_norm

        blocks = [x]  # finished sources: the embedding, then one sum per finished block
        block_scores = [key_norm(x) @ queries]  # (B, L, n_mixers) each: every mixer's logit for it
        partial: torch.Tensor | None = None  # sum of the current block's outputs so far

        def mix(j: int) -> torch.Tensor:
            scores = [s[..., j] for s in block_scores]
            values = blocks
            if partial is not None:  # still changing, so scored only for the mixer that reads it now
                scores, values = scores + [key_norm(partial) @ queries[:, j]], blocks + [partial]
            return mixers[j](values, torch.stack(scores))

        for j, sub in enumerate(self.sublayers):
            out = run(sub, mix(j))  # (B, L, D)
            partial = out if partial is None else partial + out
            if (j + 1) % self.block_size == 0:
                blocks.append(partial)
                block_scores.append(key_norm(partial) @ queries)
                partial = None
        return mix(len(self.sublayers))

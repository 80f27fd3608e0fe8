"""The ``imf_attnres`` head: average velocity ``u(z, r, t | cond)`` from an AttnRes transformer.

Tokens ``[r, t, cond_1..cond_To, z_1..z_T]`` go through one non-causal transformer with rotary
positions; the sample tokens come out, pass a final RMSNorm and a linear map to the action
dimension. A second linear map gives the instantaneous velocity ``v`` (``v_head: true``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from polx.components import ObsActionSpec
from polx_imf_attnres.attnres import AttnResTransformerBackbone
from polx_imf_attnres.config import IMFAttnResConfig
from polx_imf_attnres.layers import RMSNorm, default_ffn_hidden, precompute_rope_freqs


class HeadOutput(NamedTuple):
    """``u`` average velocity (B, T, A); ``v`` instantaneous velocity (B, T, A), None without a v-head."""

    u: torch.Tensor
    v: torch.Tensor | None


class TimeEmbedding(nn.Module):
    """A scalar time (B,) -> (B, D): sinusoidal features of ``scale * t``, then a learned MLP.

    r and t live in [0, 1], where raw sinusoids barely move; ``scale`` spreads them. The DDPM/DiT
    habit (1000) makes ``d u / d t`` huge, and that derivative is the JVP's second term: on the
    overfit check it made training unstable, so the head's default is 10 (``time_embed_scale``).
    """

    def __init__(self, dim: int, scale: float, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        self.scale = scale
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = (self.scale * t)[:, None] * self.freqs.to(t.dtype)  # (B, D/2)
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))


class IMFAttnResHead(nn.Module):
    """``forward(sample (B,T,A), r (B,), t (B,), cond (B,To,cond_dim)) -> HeadOutput(u, v)``."""

    def __init__(self, config: IMFAttnResConfig, spec: ObsActionSpec):
        super().__init__()
        self.config, self.spec = config, spec
        D = config.n_emb
        ffn_hidden = config.ffn_hidden or default_ffn_hidden(D)
        self.r_emb, self.t_emb = TimeEmbedding(D, config.time_embed_scale), TimeEmbedding(D, config.time_embed_scale)
        self.sample_emb = nn.Linear(spec.action_dim, D)
        if config.n_cond_layers == 0:
            self.cond_emb = nn.Sequential(nn.Linear(spec.cond_dim, 4 * D), nn.SiLU(), nn.Linear(4 * D, D))
            self.cond_encoder = None
        else:
            self.cond_emb = nn.Linear(spec.cond_dim, D)
            self.cond_encoder = AttnResTransformerBackbone(
                n_emb=D, n_layer=config.n_cond_layers, n_head=config.n_head, n_kv_head=config.n_kv_head,
                ffn_hidden=ffn_hidden, backbone_type="vanilla",
                dropout=config.dropout, attn_dropout=config.attn_dropout,
            )  # fmt: skip
        self.drop = nn.Dropout(config.dropout)
        self.backbone = AttnResTransformerBackbone(
            n_emb=D, n_layer=config.n_layer, n_head=config.n_head, n_kv_head=config.n_kv_head, ffn_hidden=ffn_hidden,
            backbone_type=config.backbone_type, block_size=config.attnres_block_size,
            dropout=config.dropout, attn_dropout=config.attn_dropout,
        )  # fmt: skip
        self.final_norm = RMSNorm(D)
        self.u_out = nn.Linear(D, spec.action_dim)
        self.v_out = nn.Linear(D, spec.action_dim) if config.v_head else None

        self.n_prefix = (2 if config.time_as_cond else 0) + spec.n_obs_steps  # tokens before the sample
        seq_len = self.n_prefix + spec.horizon
        cos, sin = precompute_rope_freqs(D // config.n_head, seq_len, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)  # (L, head_dim)
        self.register_buffer("rope_sin", sin, persistent=False)
        mask = self._attention_mask(seq_len) if config.causal_attn else None
        self.register_buffer("attn_mask", mask, persistent=False)
        self.apply(self._init_weights)

    def _attention_mask(self, seq_len: int) -> torch.Tensor:
        """(L, L) bool, True where allowed: everyone sees the prefix, sample tokens see earlier samples."""
        i = torch.arange(seq_len)[:, None]
        j = torch.arange(seq_len)[None, :]
        return (j < self.n_prefix) | ((i >= self.n_prefix) & (j <= i))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, sample: torch.Tensor, r: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> HeadOutput:
        B, T, _ = sample.shape
        if T != self.spec.horizon or cond.shape[1] != self.spec.n_obs_steps:
            raise ValueError(
                f"imf_attnres head built for horizon {self.spec.horizon} and {self.spec.n_obs_steps} obs steps; "
                f"got sample {tuple(sample.shape)} and cond {tuple(cond.shape)}"
            )
        cond_tokens = self.cond_emb(cond)  # (B, To, D)
        if self.cond_encoder is not None:
            cond_tokens = self.cond_encoder(cond_tokens, self.rope_cos[: cond.shape[1]], self.rope_sin[: cond.shape[1]])
        sample_tokens = self.sample_emb(sample)  # (B, T, D)
        r_emb, t_emb = self.r_emb(r), self.t_emb(t)  # (B, D) each
        if self.config.time_as_cond:
            x = torch.cat([r_emb[:, None], t_emb[:, None], cond_tokens, sample_tokens], dim=1)  # (B, L, D)
        else:
            x = torch.cat([cond_tokens, sample_tokens + (r_emb + t_emb)[:, None]], dim=1)
        x = self.backbone(self.drop(x), self.rope_cos, self.rope_sin, self.attn_mask)
        h = self.final_norm(x[:, self.n_prefix :])  # (B, T, D): the sample tokens
        return HeadOutput(u=self.u_out(h), v=self.v_out(h) if self.v_out is not None else None)

    def get_optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: linear weights decay; norms, pseudo-queries, embeddings and biases do not."""
        decay, no_decay = [], []
        for module in self.modules():
            for name, param in module.named_parameters(recurse=False):
                if isinstance(module, nn.Linear) and name == "weight":
                    decay.append(param)
                else:  # RMSNorm.weight, AttnResOperator.pseudo_query, nn.Embedding.weight, biases
                    no_decay.append(param)
        grouped = {id(p) for p in decay} | {id(p) for p in no_decay}
        assert len(grouped) == len(decay) + len(no_decay), "a parameter landed in both optimizer groups"
        assert grouped == {id(p) for p in self.parameters()}, "a parameter is in no optimizer group"
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]


def build_head(config: IMFAttnResConfig, spec: ObsActionSpec) -> IMFAttnResHead:
    """Factory registered for head ``imf_attnres``."""
    return IMFAttnResHead(config, spec)


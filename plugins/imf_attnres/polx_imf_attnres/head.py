"""The ``imf_attnres`` head: average velocity ``u(z, r, t | cond)`` from an AttnRes transformer.

Tokens ``[r, t, cond_1..cond_To, z_1..z_T]`` go through one non-causal transformer with rotary
positions; the sample tokens come out, pass a final RMSNorm and a linear map to the action
dimension. A second linear map gives the instantaneous velocity ``v`` (``v_head: true``).

``action_expert_mode`` factorises the head over the action groups (``spec.action_groups``, e.g.
RoboIMI's two arms), for studies of shared against per-arm action experts:

* ``shared``: the above; one token per step holds every group's dims.
* ``head_only_parallel``: the same trunk; each group has its own final norm and output maps.
  (A per-group linear map is a slice of a shared one, so this differs from ``shared`` only by the
  per-group norm scales: the control that tells separate outputs from separate trunks.)
* ``split_independent``: one transformer stream per group (own sample embedding, backbone, norm
  and outputs) over ``[r, t, cond..., z_g...]``, the time and condition embeddings shared; no
  attention between streams, so a group's output depends on its own noisy actions only.
* ``split_communicating``: the same streams, but every attention sublayer attends over all
  streams' tokens (``layers.joint_attention``): per-arm weights that still coordinate.
  ``cross_group_attention`` measures how much attention crosses between streams.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from polx.components import ObsActionSpec
from polx_imf_attnres.attnres import AttnResTransformerBackbone, lockstep_forward
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


class ActionOutput(nn.Module):
    """One group's output: its own final RMSNorm, then linear maps to its ``u`` (and ``v``) dims."""

    def __init__(self, dim: int, width: int, v_head: bool):
        super().__init__()
        self.final_norm = RMSNorm(dim)
        self.u_out = nn.Linear(dim, width)
        self.v_out = nn.Linear(dim, width) if v_head else None

    def forward(self, h: torch.Tensor) -> HeadOutput:
        h = self.final_norm(h)
        return HeadOutput(u=self.u_out(h), v=self.v_out(h) if self.v_out is not None else None)


class ActionStream(nn.Module):
    """One group's transformer stream (split modes): its sample embedding, backbone and output.

    The head drives the parts (streams may run in lockstep), so the stream has no ``forward``.
    """

    def __init__(self, dim: int, width: int, backbone: AttnResTransformerBackbone, v_head: bool):
        super().__init__()
        self.sample_emb = nn.Linear(width, dim)
        self.backbone = backbone
        self.output = ActionOutput(dim, width, v_head)


def _concat(parts: list[HeadOutput]) -> HeadOutput:
    """Per-group outputs, in group order, as one (B, T, A) ``u`` (and ``v``)."""
    u = torch.cat([p.u for p in parts], dim=-1)
    return HeadOutput(u=u, v=torch.cat([p.v for p in parts], dim=-1) if parts[0].v is not None else None)


class IMFAttnResHead(nn.Module):
    """``forward(sample (B,T,A), r (B,), t (B,), cond (B,To,cond_dim)) -> HeadOutput(u, v)``."""

    def __init__(self, config: IMFAttnResConfig, spec: ObsActionSpec):
        super().__init__()
        self.config, self.spec = config, spec
        D = config.n_emb
        ffn_hidden = config.ffn_hidden or default_ffn_hidden(D)
        self.r_emb, self.t_emb = TimeEmbedding(D, config.time_embed_scale), TimeEmbedding(D, config.time_embed_scale)
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
        self.mode = config.action_expert_mode
        self.group_slices = [slice(start, stop) for _, start, stop in spec.groups()]

        def backbone() -> AttnResTransformerBackbone:
            return AttnResTransformerBackbone(
                n_emb=D, n_layer=config.n_layer, n_head=config.n_head, n_kv_head=config.n_kv_head, ffn_hidden=ffn_hidden,
                backbone_type=config.backbone_type, block_size=config.attnres_block_size,
                dropout=config.dropout, attn_dropout=config.attn_dropout,
            )  # fmt: skip

        if self.mode in ("split_independent", "split_communicating"):
            self.streams = nn.ModuleList(ActionStream(D, s.stop - s.start, backbone(), config.v_head) for s in self.group_slices)
        else:
            self.sample_emb = nn.Linear(spec.action_dim, D)
            self.backbone = backbone()
            if self.mode == "head_only_parallel":
                self.outputs = nn.ModuleList(ActionOutput(D, s.stop - s.start, config.v_head) for s in self.group_slices)
            else:
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
        self._probe: list | None = None  # set by cross_group_attention: receives attention probabilities
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
        r_emb, t_emb = self.r_emb(r), self.t_emb(t)  # (B, D) each

        def tokens(sample_tokens: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, L, D)
            if self.config.time_as_cond:
                return self.drop(torch.cat([r_emb[:, None], t_emb[:, None], cond_tokens, sample_tokens], dim=1))
            return self.drop(torch.cat([cond_tokens, sample_tokens + (r_emb + t_emb)[:, None]], dim=1))

        if self.mode in ("split_independent", "split_communicating"):
            xs = [tokens(stream.sample_emb(sample[..., s])) for stream, s in zip(self.streams, self.group_slices)]
            if self.mode == "split_communicating":
                backbones = [stream.backbone for stream in self.streams]
                xs = lockstep_forward(backbones, xs, self.rope_cos, self.rope_sin, self.attn_mask, self._probe)
            else:
                xs = [stream.backbone(x, self.rope_cos, self.rope_sin, self.attn_mask) for stream, x in zip(self.streams, xs)]
            parts = [stream.output(x[:, self.n_prefix :]) for stream, x in zip(self.streams, xs)]
            return _concat(parts)
        x = self.backbone(tokens(self.sample_emb(sample)), self.rope_cos, self.rope_sin, self.attn_mask)
        h = x[:, self.n_prefix :]  # (B, T, D): the sample tokens
        if self.mode == "head_only_parallel":
            return _concat([out(h) for out in self.outputs])
        h = self.final_norm(h)
        return HeadOutput(u=self.u_out(h), v=self.v_out(h) if self.v_out is not None else None)

    def action_embeddings(self, sample: torch.Tensor) -> torch.Tensor:
        """(G, B, T, D): what each action group's dims of ``sample`` (B, T, A) contribute to its action tokens.

        Shared trunk: the group's columns of ``sample_emb`` (the bias counted in every group);
        split streams: the stream's own embedding. Equal for a split head warm-started from a
        shared one (``polx check warmstart`` compares them).
        """
        if self.mode in ("split_independent", "split_communicating"):
            return torch.stack([stream.sample_emb(sample[..., s]) for stream, s in zip(self.streams, self.group_slices)])
        weight, bias = self.sample_emb.weight, self.sample_emb.bias
        return torch.stack([sample[..., s] @ weight[:, s].T + bias for s in self.group_slices])

    def adapt_state_dict(self, source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Another ``imf_attnres`` head's weights in this head's keys: a ``shared`` head maps into each branch.

        ``head_only_parallel``: the trunk as it is; each group's norm copied and its rows of the
        output maps. Split modes: besides, the trunk (backbone) copied into every stream and each
        stream's sample embedding = the group's columns of the shared one (with its bias). Weights
        already in this head's layout pass unchanged; shapes are checked by the caller.
        """
        if self.mode == "shared" or "u_out.weight" not in source:
            return dict(source)
        split = self.mode != "head_only_parallel"
        moved = ("final_norm.", "u_out.", "v_out.") + (("sample_emb.", "backbone.") if split else ())
        out = {k: v for k, v in source.items() if not k.startswith(moved)}
        for g, s in enumerate(self.group_slices):
            prefix = f"streams.{g}.output." if split else f"outputs.{g}."
            out[prefix + "final_norm.weight"] = source["final_norm.weight"]
            for name in ("u_out", "v_out"):
                if f"{name}.weight" in source:
                    out[f"{prefix}{name}.weight"] = source[f"{name}.weight"][s]
                    out[f"{prefix}{name}.bias"] = source[f"{name}.bias"][s]
            if split:
                out[f"streams.{g}.sample_emb.weight"] = source["sample_emb.weight"][:, s]
                out[f"streams.{g}.sample_emb.bias"] = source["sample_emb.bias"]
                out.update({f"streams.{g}.{k}": v for k, v in source.items() if k.startswith("backbone.")})
        return out

    @torch.no_grad()
    def cross_group_attention(self, sample: torch.Tensor, r: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(n_layer, G, G): the mean attention mass stream g's action tokens put on stream h's tokens.

        Only ``split_communicating`` attends across streams; rows sum to 1. The off-diagonal mass
        is the share of attention that crosses between groups (0 would mean the streams ignore
        each other).
        """
        if self.mode != "split_communicating":
            raise ValueError(f"cross_group_attention: only split_communicating attends across groups; this head is {self.mode}")
        self._probe = []
        try:
            self(sample, r, t, cond)
            probs = self._probe  # n_layer * G tensors (B, H, L, G * L), stream by stream within a layer
        finally:
            self._probe = None
        G, L = len(self.streams), self.rope_cos.shape[0]
        per_query = torch.stack([p[:, :, self.n_prefix :].unflatten(-1, (G, L)).sum(-1).mean(dim=(0, 1, 2)) for p in probs])
        return per_query.view(-1, G, G)  # (n_layer, G query streams, G key streams)

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


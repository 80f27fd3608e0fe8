"""The Diffusion Policy transformer (DP-T) as a polx head.

Memory: a time token (sinusoidal embedding of the diffusion step) followed by one token per
observation step (the condition projected to n_emb), plus learned positions, through a per-token
MLP (``n_cond_layers=0``) or a transformer encoder. The noisy action chunk becomes one token per
step, plus learned positions, through a pre-norm transformer decoder that cross-attends to the
memory; a final LayerNorm and Linear map each token back to an action.

With ``causal_attn`` action i attends to actions <= i and to the memory tokens up to its own step
(the time token, observation steps 0..i), as in Diffusion Policy. With ``time_as_cond=False`` the
time token is instead prepended to the action tokens and the memory holds only observations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from polx.components import ObsActionSpec
from polx_ddpm_transformer.config import DDPMTransformerConfig


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim) of integer or float diffusion steps."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def causal_masks(horizon: int, n_obs_steps: int, time_as_cond: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean attention masks (True = may NOT attend), for the decoder's self- and cross-attention.

    Returns ``tgt_mask`` (L, L) and ``memory_mask`` (L, S), where L is the decoder sequence length
    (horizon, +1 for a prepended time token) and S the memory length (n_obs_steps, +1 for the time
    token). Decoder token i sees decoder tokens <= i; action k sees observation steps <= k (and the
    time token wherever it is), so no action looks at an observation later than itself.
    """
    n_tgt = horizon + (0 if time_as_cond else 1)
    tgt_mask = torch.ones(n_tgt, n_tgt, dtype=torch.bool).triu(diagonal=1)
    i = torch.arange(n_tgt)[:, None]  # decoder token index
    s = torch.arange(n_obs_steps + (1 if time_as_cond else 0))[None, :]  # memory token index
    if time_as_cond:  # memory [time, obs_0, ..]: action i sees s <= i + 1
        memory_mask = s > i + 1
    else:  # decoder [time, act_0, ..]: token i (action i - 1) sees obs s <= i - 1; the time token sees obs 0
        memory_mask = s > (i - 1).clamp(min=0)
    return tgt_mask, memory_mask


class DiffusionTransformer(nn.Module):
    """DP-T: ``forward(sample (B, T, A), t (B,) or scalar, cond (B, To, D)) -> (B, T, A)``."""

    def __init__(self, config: DDPMTransformerConfig, spec: ObsActionSpec):
        super().__init__()
        if spec.cond_dim < 1:
            raise ValueError(f"ddpm_transformer needs an observation condition (cond_dim >= 1), got spec {spec}")
        self.config, self.spec = config, spec
        n_emb = config.n_emb
        n_tgt = spec.horizon + (0 if config.time_as_cond else 1)
        n_memory = spec.n_obs_steps + (1 if config.time_as_cond else 0)

        self.input_emb = nn.Linear(spec.action_dim, n_emb)
        self.cond_obs_emb = nn.Linear(spec.cond_dim, n_emb)
        self.pos_emb = nn.Parameter(torch.zeros(1, n_tgt, n_emb))
        self.cond_pos_emb = nn.Parameter(torch.zeros(1, n_memory, n_emb))
        self.drop = nn.Dropout(config.p_drop_emb)

        if config.n_cond_layers > 0:
            layer = nn.TransformerEncoderLayer(
                n_emb, config.n_head, 4 * n_emb, config.p_drop_attn, activation="gelu", batch_first=True, norm_first=True
            )
            # nested tensors need post-norm layers; asking for them with pre-norm only warns
            self.encoder: nn.Module = nn.TransformerEncoder(layer, config.n_cond_layers, enable_nested_tensor=False)
        else:
            self.encoder = nn.Sequential(nn.Linear(n_emb, 4 * n_emb), nn.Mish(), nn.Linear(4 * n_emb, n_emb))
        layer = nn.TransformerDecoderLayer(
            n_emb, config.n_head, 4 * n_emb, config.p_drop_attn, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, config.n_layer)
        if config.action_expert_mode == "head_only_parallel":  # per action group: own norm and output map
            widths = [stop - start for _, start, stop in spec.groups()]
            self.group_heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(n_emb), nn.Linear(n_emb, w)) for w in widths)
        else:
            self.ln_f = nn.LayerNorm(n_emb)
            self.head = nn.Linear(n_emb, spec.action_dim)

        if config.causal_attn:
            tgt_mask, memory_mask = causal_masks(spec.horizon, spec.n_obs_steps, config.time_as_cond)
        else:
            tgt_mask = memory_mask = None
        # not persistent: derived from the config, so checkpoints need not carry them
        self.register_buffer("tgt_mask", tgt_mask, persistent=False)
        self.register_buffer("memory_mask", memory_mask, persistent=False)
        self.apply(self._init_weights)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.cond_pos_emb, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # Diffusion Policy's (GPT-style) init: N(0, 0.02) weights, zero biases, unit LayerNorm
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight, std=0.02)
            nn.init.zeros_(module.in_proj_bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, sample: torch.Tensor, t: torch.Tensor | int | float, cond: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        batch = sample.shape[0]
        if sample.shape[1:] != (spec.horizon, spec.action_dim):
            raise ValueError(f"sample: expected shape (B, {spec.horizon}, {spec.action_dim}), got {tuple(sample.shape)}")
        if cond.shape != (batch, spec.n_obs_steps, spec.cond_dim):
            raise ValueError(f"cond: expected shape ({batch}, {spec.n_obs_steps}, {spec.cond_dim}), got {tuple(cond.shape)}")
        t = torch.as_tensor(t, device=sample.device)
        t = t.expand(batch) if t.ndim == 0 else t  # (B,)
        time_token = timestep_embedding(t, self.config.n_emb).to(sample.dtype)[:, None, :]  # (B, 1, n_emb)

        obs_tokens = self.cond_obs_emb(cond)  # (B, To, n_emb)
        action_tokens = self.input_emb(sample)  # (B, T, n_emb)
        if self.config.time_as_cond:
            memory = torch.cat([time_token, obs_tokens], dim=1)  # (B, 1 + To, n_emb)
        else:
            memory = obs_tokens
            action_tokens = torch.cat([time_token, action_tokens], dim=1)  # (B, 1 + T, n_emb)
        memory = self.encoder(self.drop(memory + self.cond_pos_emb))
        x = self.drop(action_tokens + self.pos_emb)
        x = self.decoder(tgt=x, memory=memory, tgt_mask=self.tgt_mask, memory_mask=self.memory_mask)
        if not self.config.time_as_cond:
            x = x[:, 1:]  # drop the time token: (B, T, n_emb)
        if self.config.action_expert_mode == "head_only_parallel":
            return torch.cat([head(x) for head in self.group_heads], dim=-1)  # (B, T, A), groups in order
        return self.head(self.ln_f(x))  # (B, T, A)

    def get_optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: Linear and attention weights decay; biases, LayerNorms and positions do not."""
        decay, no_decay = set(), set()
        for module_name, module in self.named_modules():
            for name, _ in module.named_parameters(recurse=False):
                full = f"{module_name}.{name}" if module_name else name
                if name.endswith("bias") or isinstance(module, nn.LayerNorm) or name in ("pos_emb", "cond_pos_emb"):
                    no_decay.add(full)
                elif name.endswith("weight") and isinstance(module, (nn.Linear, nn.MultiheadAttention)):
                    decay.add(full)
        params = dict(self.named_parameters())
        assert not decay & no_decay, f"parameters in both groups: {sorted(decay & no_decay)}"
        assert decay | no_decay == params.keys(), f"parameters in no group: {sorted(params.keys() - decay - no_decay)}"
        return [
            {"params": [params[n] for n in sorted(decay)], "weight_decay": weight_decay},
            {"params": [params[n] for n in sorted(no_decay)], "weight_decay": 0.0},
        ]


def build_head(config: DDPMTransformerConfig, spec: ObsActionSpec) -> DiffusionTransformer:
    """The registered factory of head ``ddpm_transformer``."""
    return DiffusionTransformer(config, spec)

"""Config classes of the head and the objective (no torch import: the registry reads them cheaply).

Defaults are Diffusion Policy's for PushT (``transformer_for_diffusion.py`` and its DDPM
scheduler settings). The chunk shape (horizon, n_obs_steps, action_dim, cond_dim) is not here:
the head gets it from the run's ``ObsActionSpec`` (``policy.horizon`` etc.).
"""

from __future__ import annotations

from attrs import define

from polx.config import at_most, doc, in_range, non_negative, one_of, positive


@define(frozen=True, kw_only=True)
class DDPMTransformerConfig:
    """The Diffusion Policy transformer (DP-T): obs/time memory, causal action-token decoder."""

    n_layer: int = doc("transformer decoder layers", default=8, validator=[positive, at_most(512)])
    n_head: int = doc("attention heads per layer (decoder and memory encoder); must divide n_emb", default=4, validator=[positive, at_most(1024)])
    n_emb: int = doc("token width, even and >= 4; the MLPs are 4 * n_emb wide", default=256, validator=[positive, at_most(16384)])
    p_drop_emb: float = doc("dropout on token embeddings", default=0.0, validator=in_range(0.0, 1.0))
    p_drop_attn: float = doc("dropout inside every transformer layer (attention weights, feed-forward, residual branches)", default=0.3, validator=in_range(0.0, 1.0))
    causal_attn: bool = doc("action i attends to actions <= i and to obs tokens up to its step; false: full attention", default=True)
    time_as_cond: bool = doc("time token in the memory; false: prepended to the action tokens", default=True)
    n_cond_layers: int = doc(
        "transformer encoder layers over the memory (time and obs tokens); 0: a per-token MLP memory encoder",
        default=0, validator=[non_negative, at_most(512)],
    )  # fmt: skip
    # the split modes are imf_attnres's: this head's decoder is torch's fused nn.TransformerDecoder
    action_expert_mode: str = doc(
        "shared | head_only_parallel (own final LayerNorm and output map per action group); the split modes are imf_attnres's only",
        default="shared", validator=one_of("shared", "head_only_parallel"),
    )  # fmt: skip

    def __attrs_post_init__(self) -> None:
        if self.n_emb % self.n_head:
            raise ValueError(f"n_head: n_emb ({self.n_emb}) must be divisible by n_head ({self.n_head})")
        if self.n_emb % 2 or self.n_emb < 4:
            raise ValueError(f"n_emb: must be even and >= 4 (sinusoidal time embedding), got {self.n_emb}")


@define(frozen=True, kw_only=True)
class DDPMConfig:
    """DDPM training; DDPM ancestral sampling over all steps, or DDIM (eta 0) with fewer."""

    num_train_timesteps: int = doc("diffusion steps N of the noise schedule (training draws t from 0..N-1)", default=100, validator=positive)
    beta_schedule: str = doc(
        "squaredcos_cap_v2 (cosine, each beta capped at 0.999) | linear (beta_start to beta_end)",
        default="squaredcos_cap_v2", validator=one_of("squaredcos_cap_v2", "linear"),
    )  # fmt: skip
    beta_start: float = doc("first beta of the linear schedule (linear schedule only)", default=1e-4, validator=in_range(0.0, 1.0))
    beta_end: float = doc("last beta of the linear schedule (linear schedule only)", default=0.02, validator=in_range(0.0, 1.0))
    prediction_type: str = doc("what the head predicts: epsilon (the noise) | sample (the clean chunk)", default="epsilon", validator=one_of("epsilon", "sample"))
    clip_sample: bool = doc("clamp the predicted clean chunk to +-clip_sample_range while sampling", default=True)
    clip_sample_range: float = doc("the bound clip_sample clamps to, in normalized action units", default=1.0, validator=positive)
    num_inference_steps: int = doc(
        "sampling steps when none are asked for; = num_train_timesteps: DDPM over every step; fewer: DDIM (eta 0) with that many evenly spaced steps",
        default=100, validator=positive,
    )  # fmt: skip

    @property
    def max_sample_steps(self) -> int:
        """The most sampling steps a chunk can take (DDIM cannot stride below one train step);
        core checks eval.num_steps, eval.sample_steps and train.val_sample_steps against it."""
        return self.num_train_timesteps

    def __attrs_post_init__(self) -> None:
        if self.beta_schedule == "linear" and not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(
                f"beta_end: the linear schedule needs 0 < beta_start < beta_end < 1, "
                f"got beta_start={self.beta_start}, beta_end={self.beta_end}"
            )
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps: must be <= num_train_timesteps ({self.num_train_timesteps}), "
                f"got {self.num_inference_steps}"
            )

"""Config classes of the head and the objective (no torch import: the registry reads them cheaply).

Defaults are Diffusion Policy's for PushT (``transformer_for_diffusion.py`` and its DDPM
scheduler settings). The chunk shape (horizon, n_obs_steps, action_dim, cond_dim) is not here:
the head gets it from the run's ``ObsActionSpec`` (``policy.horizon`` etc.).
"""

from __future__ import annotations

from attrs import define, field

from polx.config import at_most, in_range, non_negative, one_of, positive


@define(frozen=True, kw_only=True)
class DDPMTransformerConfig:
    """The Diffusion Policy transformer (DP-T): obs/time memory, causal action-token decoder."""

    n_layer: int = field(default=8, validator=[positive, at_most(512)])  # decoder layers
    n_head: int = field(default=4, validator=[positive, at_most(1024)])
    n_emb: int = field(default=256, validator=[positive, at_most(16384)])  # token width; the MLPs are 4 * n_emb wide
    p_drop_emb: float = field(default=0.0, validator=in_range(0.0, 1.0))  # dropout on token embeddings
    p_drop_attn: float = field(default=0.3, validator=in_range(0.0, 1.0))  # dropout inside every layer
    causal_attn: bool = True  # action i attends to actions <= i and to obs tokens up to its step
    time_as_cond: bool = True  # time token in the memory; false: prepended to the action tokens
    n_cond_layers: int = field(default=0, validator=[non_negative, at_most(512)])  # 0: per-token MLP memory encoder
    #: shared | head_only_parallel (own final LayerNorm + output map per action group); the split
    #: modes are imf_attnres's (this head's decoder is torch's fused nn.TransformerDecoder)
    action_expert_mode: str = field(default="shared", validator=one_of("shared", "head_only_parallel"))

    def __attrs_post_init__(self) -> None:
        if self.n_emb % self.n_head:
            raise ValueError(f"n_head: n_emb ({self.n_emb}) must be divisible by n_head ({self.n_head})")
        if self.n_emb % 2 or self.n_emb < 4:
            raise ValueError(f"n_emb: must be even and >= 4 (sinusoidal time embedding), got {self.n_emb}")


@define(frozen=True, kw_only=True)
class DDPMConfig:
    """DDPM training; DDPM ancestral sampling over all steps, or DDIM (eta 0) with fewer."""

    num_train_timesteps: int = field(default=100, validator=positive)
    beta_schedule: str = field(default="squaredcos_cap_v2", validator=one_of("squaredcos_cap_v2", "linear"))
    beta_start: float = field(default=1e-4, validator=in_range(0.0, 1.0))  # linear schedule only
    beta_end: float = field(default=0.02, validator=in_range(0.0, 1.0))  # linear schedule only
    prediction_type: str = field(default="epsilon", validator=one_of("epsilon", "sample"))
    clip_sample: bool = True  # clamp the predicted clean chunk to +-clip_sample_range while sampling
    clip_sample_range: float = field(default=1.0, validator=positive)
    # == num_train_timesteps: DDPM over every step; fewer: DDIM with that many evenly spaced steps
    num_inference_steps: int = field(default=100, validator=positive)

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

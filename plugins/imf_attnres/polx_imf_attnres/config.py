"""Config classes of the ``imf_attnres`` head and the ``imf`` objective (attrs only: no torch import)."""

from __future__ import annotations

from attrs import define, field

from polx.config import at_most, in_range, non_negative, one_of, positive

BACKBONE_TYPES = ("attnres_full", "attnres_block", "vanilla")
#: how the head factorises over the action groups (``spec.action_groups``; see head.py)
ACTION_EXPERT_MODES = ("shared", "head_only_parallel", "split_independent", "split_communicating")


@define(frozen=True, kw_only=True)
class IMFAttnResConfig:
    """The ``imf_attnres`` head: a transformer over ``[r, t, cond..., sample...]`` tokens."""

    n_emb: int = field(default=256, validator=[positive, at_most(16384)])
    n_layer: int = field(default=12, validator=[positive, at_most(512)])  # transformer layers (attention + FFN each)
    n_head: int = field(default=1, validator=[positive, at_most(1024)])
    n_kv_head: int = field(default=1, validator=[positive, at_most(1024)])  # grouped-query attention: n_head % n_kv_head == 0
    ffn_hidden: int | None = field(default=None, validator=[positive, at_most(1 << 17)])  # None: 8/3 * n_emb rounded up to 64
    n_cond_layers: int = field(default=0, validator=[non_negative, at_most(512)])  # 0: an MLP encodes cond tokens
    time_as_cond: bool = True  # r and t as tokens; false: their embeddings are added to each sample token
    causal_attn: bool = False  # sample tokens attend causally among themselves (always to the prefix)
    time_embed_scale: float = field(default=10.0, validator=positive)  # sinusoids of scale * t (see head.py)
    v_head: bool = True  # separate instantaneous-velocity output; false: v = u(z, t, t)
    backbone_type: str = field(default="attnres_full", validator=one_of(*BACKBONE_TYPES))
    attnres_block_size: int = field(default=4, validator=positive)  # sublayers per block (attnres_block)
    rope_base: float = field(default=10000.0, validator=positive)
    dropout: float = field(default=0.0, validator=in_range(0.0, 1.0))  # embeddings and sublayer outputs
    attn_dropout: float = field(default=0.0, validator=in_range(0.0, 1.0))
    #: shared | head_only_parallel (own final norm + output maps per group) | split_independent (a
    #: transformer stream per group, no attention between groups) | split_communicating (streams
    #: that attend to each other); groups from the env (``policy.action_layout``)
    action_expert_mode: str = field(default="shared", validator=one_of(*ACTION_EXPERT_MODES))

    def __attrs_post_init__(self) -> None:
        if self.n_emb % self.n_head:
            raise ValueError(f"n_head: must divide n_emb ({self.n_emb}); got {self.n_head}")
        if (self.n_emb // self.n_head) % 2:
            raise ValueError(f"n_head: n_emb / n_head must be even (rotary pairs); got {self.n_emb} / {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_kv_head: must divide n_head ({self.n_head}); got {self.n_kv_head}")


@define(frozen=True, kw_only=True)
class IMFConfig:
    """The ``imf`` objective (improved MeanFlow) and its sampler.

    ``variant`` picks the training semantics (both documented in ``objective.py``):

    * ``polx``: times from ``time_sampler`` with a ``r_equals_t_ratio`` share at r = t; the JVP's
      tangent is the head's v-head output, which gets its own loss term (a head without a
      v-head uses ``u(z, t, t)``);
    * ``reference``: the MeanFlow paper's semantics: t, r ~ U(0, 1) sorted so t >= r, the tangent
      ``v = u(z, t, t)`` (a v-head, if the head has one, is not used), and the loss is the MSE of
      ``V`` alone. ``time_sampler`` and ``r_equals_t_ratio`` are ignored.
    """

    variant: str = field(default="polx", validator=one_of("polx", "reference"))
    time_sampler: str = field(default="logit_normal", validator=one_of("logit_normal", "uniform"))
    logit_normal_mean: float = -0.4
    logit_normal_std: float = field(default=1.0, validator=positive)
    r_equals_t_ratio: float = field(default=0.5, validator=in_range(0.0, 1.0))  # fraction of the batch with r = t
    jvp_impl: str = field(default="func", validator=one_of("func", "autograd"))
    loss_weighting: str = field(default="mse", validator=one_of("mse", "adaptive"))
    adaptive_p: float = field(default=1.0, validator=non_negative)  # adaptive: w = 1 / stopgrad(L + c)^p
    adaptive_c: float = field(default=0.01, validator=positive)
    default_num_steps: int = field(default=1, validator=positive)  # sampling steps when none are asked for

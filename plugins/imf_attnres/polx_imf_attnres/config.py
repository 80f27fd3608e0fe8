"""Config classes of the ``imf_attnres`` head and the ``imf`` objective (attrs only: no torch import)."""

from __future__ import annotations

from attrs import define

from polx.config import at_most, doc, in_range, non_negative, one_of, positive

BACKBONE_TYPES = ("attnres_full", "attnres_block", "vanilla")
#: how the head factorises over the action groups (``spec.action_groups``; see head.py)
ACTION_EXPERT_MODES = ("shared", "head_only_parallel", "split_independent", "split_communicating")


@define(frozen=True, kw_only=True)
class IMFAttnResConfig:
    """The ``imf_attnres`` head: a transformer over ``[r, t, cond..., sample...]`` tokens."""

    n_emb: int = doc("token width; n_head must divide it, with n_emb / n_head even (rotary pairs)", default=256, validator=[positive, at_most(16384)])
    n_layer: int = doc("transformer layers (attention + FFN each)", default=12, validator=[positive, at_most(512)])
    n_head: int = doc("attention query heads; must divide n_emb", default=1, validator=[positive, at_most(1024)])
    n_kv_head: int = doc("key/value heads of grouped-query attention; must divide n_head", default=1, validator=[positive, at_most(1024)])
    ffn_hidden: int | None = doc(
        "hidden width of each SwiGLU FFN; null: 8/3 * n_emb rounded up to a multiple of 64", default=None, validator=[positive, at_most(1 << 17)]
    )  # fmt: skip
    n_cond_layers: int = doc(
        "layers of a plain (vanilla) transformer over the cond tokens; 0: a per-token MLP encodes them",
        default=0, validator=[non_negative, at_most(512)],
    )  # fmt: skip
    time_as_cond: bool = doc("r and t as two prefix tokens; false: their embeddings are added to each sample token", default=True)
    causal_attn: bool = doc("sample tokens attend causally among themselves (always to the prefix); false: full attention", default=False)
    time_embed_scale: float = doc("r and t (in [0, 1]) are multiplied by this before their sinusoidal embedding", default=10.0, validator=positive)
    v_head: bool = doc("a separate output for the instantaneous velocity v; false: v = u(z, t, t)", default=True)
    backbone_type: str = doc(
        "attnres_full (each sublayer mixes every earlier output) | attnres_block (mixes block sums of "
        "attnres_block_size sublayers) | vanilla (plain residuals)",
        default="attnres_full", validator=one_of(*BACKBONE_TYPES),
    )  # fmt: skip
    attnres_block_size: int = doc("sublayers (attention or FFN each) per block with backbone_type=attnres_block", default=4, validator=positive)
    rope_base: float = doc("rotary position base: channel pair i turns by position * rope_base^(-2i / head_dim)", default=10000.0, validator=positive)
    dropout: float = doc("dropout on the embedded tokens and on each sublayer's output", default=0.0, validator=in_range(0.0, 1.0))
    attn_dropout: float = doc("dropout on the attention weights", default=0.0, validator=in_range(0.0, 1.0))
    action_expert_mode: str = doc(
        "shared | head_only_parallel (own final norm and output maps per action group) | split_independent (a "
        "transformer stream per group, no attention between groups) | split_communicating (streams that attend "
        "to each other); groups from the env (policy.action_layout)",
        default="shared", validator=one_of(*ACTION_EXPERT_MODES),
    )  # fmt: skip

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

    variant: str = doc("polx | reference: the training semantics (see the class docstring)", default="polx", validator=one_of("polx", "reference"))
    time_sampler: str = doc(
        "logit_normal | uniform: how the two times are drawn (then sorted so r <= t); variant polx only",
        default="logit_normal", validator=one_of("logit_normal", "uniform"),
    )  # fmt: skip
    logit_normal_mean: float = doc("time_sampler logit_normal: mean of the normal whose sigmoid is a time", default=-0.4)
    logit_normal_std: float = doc("time_sampler logit_normal: std of the normal whose sigmoid is a time", default=1.0, validator=positive)
    r_equals_t_ratio: float = doc("fraction of the batch with r = t (their JVP is skipped); variant polx only", default=0.5, validator=in_range(0.0, 1.0))
    jvp_impl: str = doc(
        "func (forward-mode torch.func.jvp) | autograd (torch.autograd.functional.jvp); func falls back to autograd if it fails",
        default="func", validator=one_of("func", "autograd"),
    )  # fmt: skip
    loss_weighting: str = doc(
        "mse (mean over valid entries) | adaptive (mean over samples of L / stopgrad(L + adaptive_c)^adaptive_p)",
        default="mse", validator=one_of("mse", "adaptive"),
    )  # fmt: skip
    adaptive_p: float = doc("loss_weighting adaptive: the exponent p of w = 1 / stopgrad(L + c)^p", default=1.0, validator=non_negative)
    adaptive_c: float = doc("loss_weighting adaptive: the constant c of w = 1 / stopgrad(L + c)^p", default=0.01, validator=positive)
    default_num_steps: int = doc("sampling steps (head calls) per chunk when none are asked for", default=1, validator=positive)

"""The policy: observation encoder + head + normalizer, trained and sampled through the hooks.

The head and objective come from plugins; core reaches them only through ``build_head``,
``compute_loss`` and ``sample`` (``plugins.hook``) and the objective registry, so a plugin that
wraps one of those hooks is honoured everywhere, training, validation and rollouts alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polx.components import ObsActionSpec
from polx.policy.encoder import ObsEncoder
from polx.policy.layout import ActionLayout
from polx.policy.valid import valid_mask


class Policy(nn.Module):
    """Everything that turns observations into action chunks; its state dict holds the normalizer.

    ``objective`` is the objective object (not trained); ``hook`` is ``plugins.hook``.
    """

    def __init__(
        self, *, encoder: ObsEncoder, head: nn.Module, normalizer: nn.Module, objective: Any, hook: Any, policy_config: Any,
        layout: ActionLayout | None = None,
    ):  # fmt: skip
        super().__init__()
        self.layout = layout  # None: the head sees the env's action as it is
        self.encoder = encoder
        self.head = head
        self.normalizer = normalizer
        self.objective = objective
        self.hook = hook
        self.horizon = policy_config.horizon
        self.n_obs_steps = policy_config.n_obs_steps
        self.n_action_steps = policy_config.n_action_steps

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def objective_head(self) -> Any:
        """The head the objective calls: under a packed layout, blind to padded input dims."""
        return self.layout.blind(self.head) if self.layout is not None else self.head

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw observations (B, To, ...) -> condition (B, To, cond_dim); low-dim keys normalized here."""
        device = self.device
        ready = {}
        for key in self.encoder.rgb_keys:
            ready[key] = obs[key].to(device)
        for key in self.encoder.low_dim_keys:
            ready[key] = self.normalizer.normalize(key, obs[key].to(device))
        return self.encoder(ready)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Teacher-forced loss on a dataset batch (``obs``, ``action``, ``action_is_pad``[, ``action_mask``]).

        The objective receives ``action`` (normalized), ``cond``, ``action_is_pad``, ``action_mask``
        when given, and ``valid``: the (B, T, A) bool mask of the entries that count.
        """
        device = self.device
        head_batch = {
            "action": self.normalizer.normalize("action", batch["action"].to(device)),  # (B, T, A)
            "cond": self.encode(batch["obs"]),  # (B, To, D)
            "action_is_pad": batch["action_is_pad"].to(device),  # (B, T)
        }
        if "action_mask" in batch:
            head_batch["action_mask"] = batch["action_mask"].to(device)
        if self.layout is not None and self.layout.packed:  # the head's width; padding masked out
            head_batch["action_mask"] = self.layout.pack_mask(head_batch.get("action_mask"), head_batch["action"])
            head_batch["action"] = self.layout.pack(head_batch["action"])
        # the one mask every objective uses: (B, T, A) bool, not padding and not masked out
        head_batch["valid"] = valid_mask(head_batch["action"], head_batch["action_is_pad"], head_batch.get("action_mask"))
        loss, metrics = self.hook.compute_loss(objective=self.objective, head=self.objective_head, batch=head_batch)
        return loss, metrics

    @torch.no_grad()
    def predict_action(
        self, obs: dict[str, torch.Tensor], num_steps: int | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``obs`` (B, To, ...) -> ``action`` (B, n_action_steps, A) and ``action_pred`` (B, horizon, A), unnormalized.

        ``action`` starts at index ``n_obs_steps - 1``: the step of the newest observation.
        """
        cond = self.encode(obs)
        chunk = self.hook.sample(objective=self.objective, head=self.objective_head, cond=cond, num_steps=num_steps, generator=generator)
        if self.layout is not None:
            chunk = self.layout.unpack(chunk)  # the env's width: padding never leaves the policy
        action_pred = self.normalizer.unnormalize("action", chunk)  # (B, horizon, A)
        start = self.n_obs_steps - 1
        return {"action": action_pred[:, start : start + self.n_action_steps], "action_pred": action_pred}


def build_policy(plugins: Any, config: Any, shape_meta: dict, normalizer: nn.Module) -> Policy:
    """Assemble a policy for ``config`` (a ``RunConfig``) through the hooks and the registry."""
    encoder = ObsEncoder(shape_meta, config.encoder)
    layout = ActionLayout.from_config(shape_meta, config.policy)
    spec = ObsActionSpec(
        action_dim=layout.dim,
        horizon=config.policy.horizon,
        n_obs_steps=config.policy.n_obs_steps,
        cond_dim=encoder.cond_dim,
        action_groups=layout.head_groups,
    )
    head = plugins.hook.build_head(name=config.components.head, config=config.head, spec=spec)
    if head is None:
        raise RuntimeError(f"no plugin built head {config.components.head!r} (build_head returned None)")
    objective = plugins.registry.get("objective", config.components.objective).build(config.objective)
    return Policy(
        encoder=encoder, head=head, normalizer=normalizer, objective=objective, hook=plugins.hook, policy_config=config.policy,
        layout=layout,
    )  # fmt: skip


def spec_summary(config: Any, shape_meta: dict) -> dict:
    """What a checkpoint must match to be loaded into a policy: head, objective and shapes."""
    summary = {
        "head": config.components.head,
        "objective": config.components.objective,
        "env": config.components.env,
        "obs": {k: list(v["shape"]) for k, v in shape_meta["obs"].items()},
        "action_dim": int(shape_meta["action"]["shape"][0]),
        "horizon": config.policy.horizon,
        "n_obs_steps": config.policy.n_obs_steps,
    }
    layout = ActionLayout.from_config(shape_meta, config.policy)
    if layout.packed:  # only then: checkpoints written before layouts existed still match
        summary["action_layout"] = {"width": layout.width, "groups": [list(g) for g in layout.groups]}
    return summary

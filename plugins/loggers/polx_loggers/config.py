"""The loggers' config classes: every option under ``loggers.<name>.`` with its default.

Cheap to import (attrs only): ``plugin.py`` registers these at ``polx plugins list`` time.
Credentials are never options here: SwanLab and W&B read their keys from the environment.
"""

from __future__ import annotations

import attrs
from attrs import define

from polx.config import doc, one_of

SWANLAB_MODES = ("online", "offline", "local", "disabled")
WANDB_MODES = ("online", "offline", "disabled")


@define(frozen=True, kw_only=True)
class SwanLabConfig:
    """``loggers.swanlab.*``: SwanLab's mode, project and run labels (its files live in ``<run dir>/swanlab``)."""

    mode: str | None = doc(
        "online | offline | local | disabled; null: SWANLAB_MODE from the environment, else online with SWANLAB_API_KEY, else offline",
        default=None, validator=attrs.validators.optional(one_of(*SWANLAB_MODES)),
    )  # fmt: skip
    project: str = doc("SwanLab project the run is logged to", default="polx")
    workspace: str | None = doc("SwanLab workspace; null: the account's own workspace", default=None)
    experiment_name: str | None = doc("SwanLab experiment name; null: the run directory's name", default=None)
    description: str | None = doc("SwanLab experiment description; null: none", default=None)
    group: str | None = doc("SwanLab experiment group; null: none", default=None)
    tags: tuple[str, ...] = doc("SwanLab experiment tags; [] = none", default=())
    system_stats: bool = doc("SwanLab's periodic hardware monitor (CPU/GPU/memory sampling)", default=False)


@define(frozen=True, kw_only=True)
class WandbConfig:
    """``loggers.wandb.*``: Weights & Biases' mode, project and run labels (its files live in ``<run dir>/wandb``)."""

    mode: str | None = doc(
        "online | offline | disabled; null: WANDB_MODE from the environment, else online with WANDB_API_KEY, else offline",
        default=None, validator=attrs.validators.optional(one_of(*WANDB_MODES)),
    )  # fmt: skip
    project: str = doc("W&B project the run is logged to", default="polx")
    entity: str | None = doc("W&B entity (user or team); null: the account's default entity", default=None)
    name: str | None = doc("W&B run name; null: the run directory's name", default=None)
    notes: str | None = doc("W&B run notes; null: none", default=None)
    group: str | None = doc("W&B run group; null: none", default=None)
    tags: tuple[str, ...] = doc("W&B run tags; [] = none", default=())
    system_stats: bool = doc("W&B's system-metrics sampling (a background sampler)", default=False)

"""The loggers' config classes: every option under ``loggers.<name>.`` with its default.

Cheap to import (attrs only): ``plugin.py`` registers these at ``polx plugins list`` time.
Credentials are never options here: SwanLab and W&B read their keys from the environment.
"""

from __future__ import annotations

import attrs
from attrs import define, field

from polx.config import one_of

SWANLAB_MODES = ("online", "offline", "local", "disabled")
WANDB_MODES = ("online", "offline", "disabled")


@define(frozen=True, kw_only=True)
class SwanLabConfig:
    # None: SWANLAB_MODE from the environment, else online with SWANLAB_API_KEY, else offline
    mode: str | None = field(default=None, validator=attrs.validators.optional(one_of(*SWANLAB_MODES)))
    project: str = "polx"
    workspace: str | None = None  # None: the account's own workspace
    experiment_name: str | None = None  # None: the run directory's name
    description: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    system_stats: bool = False  # SwanLab's periodic hardware monitor (CPU/GPU/memory sampling)


@define(frozen=True, kw_only=True)
class WandbConfig:
    # None: WANDB_MODE from the environment, else online with WANDB_API_KEY, else offline
    mode: str | None = field(default=None, validator=attrs.validators.optional(one_of(*WANDB_MODES)))
    project: str = "polx"
    entity: str | None = None  # None: the account's default entity
    name: str | None = None  # None: the run directory's name
    notes: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    system_stats: bool = False  # W&B's system-metrics sampling (a background sampler)

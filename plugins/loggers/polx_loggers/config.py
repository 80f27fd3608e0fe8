"""The loggers' config classes: every option under ``loggers.<name>.`` with its default.

Cheap to import (attrs only): ``plugin.py`` registers these at ``polx plugins list`` time.
Credentials are never options here: SwanLab and W&B read their keys from the environment.
"""

from __future__ import annotations

from pathlib import Path

import attrs
from attrs import define, field

from polx.config import one_of

SWANLAB_MODES = ("online", "offline", "local", "disabled")
WANDB_MODES = ("online", "offline", "disabled")


def _file_name(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not value or Path(value).name != value or value in (".", ".."):
        raise ValueError(f"{attribute.name}: must be a plain file name inside the run directory, got {value!r}")


@define(frozen=True, kw_only=True)
class JsonLoggerConfig:
    enabled: bool = True  # false turns the JSON log off (so does --logger none)
    filename: str = field(default="logs.json.txt", validator=_file_name)


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

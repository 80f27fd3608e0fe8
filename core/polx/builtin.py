"""Core's own hook implementations: the registry-backed fallbacks every plugin can rely on,
and core's built-in components (the JSON log, the dataset formats, the ``offline`` env).

They run last (``trylast``), so a plugin that implements a hook itself wins; a plugin that only
registers components gets head construction, loss and sampling dispatch from here, and its
loggers get failure isolation from ``log_metrics`` below.
"""

from __future__ import annotations

from functools import partial

import warnings
from typing import Any

from polx.hookspecs import hookimpl
from polx.logdispatch import REQUIRED_LOGGERS, required_log_failed


class CorePlugin:
    def __init__(self, registry: Any):
        self.registry = registry

    @hookimpl
    def register_components(self, register: Any) -> None:
        """Core's own components, registered before any plugin's (so their names are core's): the
        JSON log, the dataset formats and the env-less ``offline`` env, through the door plugins use."""
        from polx.data import hdf5_format, lerobot_format, offline_env, zarr_format
        from polx.jsonlog import LOG_NAME, JsonLogConfig

        register(
            "logger", "json", JsonLogConfig, "polx.jsonlog:open_json_log",
            help=f"{LOG_NAME} in the run directory, one JSON object per line (always on unless --logger none)",
        )
        register("dataset", "zarr", zarr_format.ZarrFormatConfig, "polx.data.zarr_format:ZarrFormat", help=zarr_format.HELP)
        register("dataset", "hdf5", hdf5_format.Hdf5FormatConfig, "polx.data.hdf5_format:Hdf5Format", help=hdf5_format.HELP)
        register("dataset", "lerobot", lerobot_format.LeRobotFormatConfig, "polx.data.lerobot_format:LeRobotFormat", help=lerobot_format.HELP)
        register(
            # built with this registry, so its dataset may be in any installed format (plugins' too)
            "env", "offline", offline_env.OfflineEnvConfig, partial(offline_env.OfflineAdapter, registry=self.registry),
            preset=offline_env.OFFLINE_PRESET,
            help="no simulator: shapes from --dataset (chosen when polx train gets --dataset without --env); losses only, no rollouts",
        )

    @hookimpl(trylast=True)
    def build_head(self, name: str, config: Any, spec: Any) -> Any:
        return self.registry.get("head", name).build(config, spec)

    @hookimpl(trylast=True)
    def compute_loss(self, objective: Any, head: Any, batch: dict) -> Any:
        return objective.compute_loss(head, batch)

    @hookimpl(trylast=True)
    def sample(self, objective: Any, head: Any, cond: Any, num_steps: Any, generator: Any) -> Any:
        return objective.sample(head, cond, num_steps, generator)

    @hookimpl
    def log_metrics(self, run: Any, step: int, metrics: dict, images: dict) -> None:
        """Forward to each logger the run activated; one that raises warns once and is dropped."""
        for name, logger in list(run.loggers.items()):
            if name in run.failed_loggers:
                continue
            try:
                logger.log(step, metrics, images)
            except Exception as exc:  # a tracker's failure is reported, never fatal; the JSON log's is
                if name in REQUIRED_LOGGERS:
                    raise required_log_failed(name, step, exc) from exc
                run.failed_loggers.add(name)
                warnings.warn(f"logger {name!r} failed and is skipped from now on: {type(exc).__name__}: {exc}", stacklevel=2)

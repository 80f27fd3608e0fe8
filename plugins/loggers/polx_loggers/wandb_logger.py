"""Weights & Biases, kept for users who have not moved to SwanLab. Files in ``<run dir>/wandb``.

Never prompts: ``online`` first checks for credentials without a prompt (``WANDB_API_KEY``, or a
saved ``wandb login``) and fails with a message when there are none; core then warns and skips
this logger. The logger owns the process's wandb session: closing it tears the session down.
System-metrics sampling is off unless ``loggers.wandb.system_stats=true``, and the
console is not captured.
"""

from __future__ import annotations

import sys
from pathlib import Path

from polx.components import Run
from polx_loggers.config import WANDB_MODES, WandbConfig
from polx_loggers.run_ids import tracker_run_id
from polx_loggers.modes import TrackerLogger, resolve_mode


def open_wandb_logger(config: WandbConfig, run: Run) -> TrackerLogger:
    mode, notice = resolve_mode("wandb", config.mode, WANDB_MODES)
    run_dir = Path(run.dir)
    if notice:
        print(f"polx: {notice} to {run_dir / 'wandb'}", file=sys.stderr)
    import wandb

    if mode == "online" and not wandb.login(prompt=False, verify=False):
        raise RuntimeError("wandb online mode needs credentials: set WANDB_API_KEY in the environment (or run `wandb login` once)")
    run_dir.mkdir(parents=True, exist_ok=True)  # wandb falls back to a temp dir when ``dir`` is missing
    settings = wandb.Settings(x_disable_stats=not config.system_stats, console="off")
    wb_run = wandb.init(
        mode=mode,
        dir=str(run_dir),  # wandb writes into <dir>/wandb
        project=config.project,
        entity=config.entity,
        name=config.name or run.name,
        notes=config.notes,
        group=config.group,
        tags=list(config.tags) or None,
        config=dict(run.config),
        settings=settings,
        id=tracker_run_id(Path(run.dir), "wandb"),  # a resumed polx run continues this tracker run
        resume="allow",
    )
    # finish returns before wandb-core has written the offline store; teardown waits for it and
    # stops the helper process, so a closed logger has everything on disk
    return TrackerLogger("wandb", wb_run, wandb.Image, after_finish=wandb.teardown)

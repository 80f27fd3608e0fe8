"""SwanLab, the primary tracker. Its files live in ``<run dir>/swanlab``.

Never prompts: SwanLab's interactive login is switched off, so ``online`` without a key (from
``SWANLAB_API_KEY``, read by SwanLab itself, or a saved ``swanlab login``) fails with a message
instead of waiting for a TTY; core then warns and skips this logger.
"""

from __future__ import annotations

import sys
from pathlib import Path

from polx.components import Run
from polx_loggers.config import SWANLAB_MODES, SwanLabConfig
from polx_loggers.run_ids import tracker_run_id
from polx_loggers.modes import TrackerLogger, resolve_mode


def open_swanlab_logger(config: SwanLabConfig, run: Run) -> TrackerLogger:
    mode, notice = resolve_mode("swanlab", config.mode, SWANLAB_MODES)
    log_dir = Path(run.dir) / "swanlab"
    if notice:
        print(f"polx: {notice} to {log_dir}", file=sys.stderr)
    import swanlab

    settings = swanlab.Settings(
        interactive=False,
        terminal=swanlab.Settings.Terminal(proxy_type="none"),  # no console capture: the run dir has its own output
        probe=swanlab.Settings.Probe(monitor=config.system_stats),
    )
    sw_run = swanlab.init(
        mode=mode,
        log_dir=str(log_dir),
        project=config.project,
        workspace=config.workspace,
        name=config.experiment_name or run.name,
        description=config.description,
        group=config.group,
        tags=list(config.tags) or None,
        config=dict(run.config),
        settings=settings,
        id=tracker_run_id(Path(run.dir), "swanlab"),  # a resumed polx run continues this tracker run
        resume="allow",
    )
    return TrackerLogger("swanlab", sw_run, swanlab.Image)

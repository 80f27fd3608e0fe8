"""SwanLab, the primary tracker. Its files live in ``<run dir>/swanlab``.

Never prompts: SwanLab's interactive login is switched off, so ``online`` without a key (from
``SWANLAB_API_KEY``, read by SwanLab itself, or a saved ``swanlab login``) fails with a message
instead of waiting for a TTY; core then warns and skips this logger.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from polx.components import Run
from polx_loggers.config import SWANLAB_MODES, SwanLabConfig
from polx_loggers.modes import ImageSender, resolve_mode


class SwanLabLogger:
    def __init__(self, sw_run: Any, make_image: Any):
        self._run = sw_run
        self._images = ImageSender("swanlab", make_image)

    def log(self, step: int, metrics: Mapping[str, float], images: Mapping[str, str]) -> None:
        if metrics:
            self._run.log(dict(metrics), step=step)
        self._images.send(lambda media: self._run.log(media, step=step), images)

    def close(self) -> None:
        self._run.finish()


def open_swanlab_logger(config: SwanLabConfig, run: Run) -> SwanLabLogger:
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
    )
    return SwanLabLogger(sw_run, swanlab.Image)

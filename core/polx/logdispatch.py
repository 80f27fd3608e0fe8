"""Opening the run's loggers and sending them metrics, with the guarantees core owns.

- A logger (or a third-party ``log_metrics`` implementation) that raises warns once and is
  skipped from then on; training and the other loggers continue. Trackers are optional.
- The JSON log is not: it is the run's own record (curves, sweeps and resumes read it), so a
  JSON log that cannot be opened or written stops the run with a ``RequiredLogError`` instead
  of switching itself off and leaving a "finished" run with records missing.
- Only numbers reach loggers as metrics and only still images (PNG/JPEG paths) as images:
  a video-like value is dropped with one warning. polx never records or uploads videos.
"""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path
from typing import Any, Mapping

from polx.components import Run
from polx.errors import PolxError

#: loggers a run cannot do without: a failure to open or write one stops the run
REQUIRED_LOGGERS = frozenset({"json"})


class RequiredLogError(PolxError):
    """A required logger failed; the run stops (exit 1), its last checkpoint kept."""


def required_log_failed(name: str, step: int | None, exc: BaseException) -> RequiredLogError:
    when = "could not be opened" if step is None else f"could not record step {step}"
    return RequiredLogError(
        f"the {name} log {when} ({type(exc).__name__}: {exc}); the run stopped rather than go on with records missing. "
        "Free disk space or repair the file, then continue with polx train --resume"
    )

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_VIDEO_SUFFIXES = {".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv"}


def open_loggers(plugins: Any, run: Run, config: Any) -> None:
    """Instantiate the loggers named in ``config.components.loggers`` into ``run.loggers``.

    A logger whose config has ``enabled: false`` is not opened; one whose factory raises is
    reported and left out (training does not depend on any tracker).
    """
    for name in config.components.loggers:
        cfg = config.loggers.get(name)
        if cfg is not None and getattr(cfg, "enabled", True) is False:
            continue
        try:
            run.loggers[name] = plugins.registry.get("logger", name).build(cfg, run)
        except Exception as exc:
            if name in REQUIRED_LOGGERS:
                raise required_log_failed(name, None, exc) from exc
            warnings.warn(f"logger {name!r} could not start and is skipped: {type(exc).__name__}: {exc}", stacklevel=2)


def close_loggers(run: Run) -> None:
    for name, logger in list(run.loggers.items()):
        try:
            logger.close()
        except Exception as exc:
            warnings.warn(f"logger {name!r} failed to close: {type(exc).__name__}: {exc}", stacklevel=2)
    run.loggers.clear()


def _warn_once(run: Run, key: str, message: str) -> None:
    if key not in run.warned:
        run.warned.add(key)
        warnings.warn(message, stacklevel=3)


def _is_video_like(value: Any) -> bool:
    if "video" in type(value).__name__.lower():
        return True
    shape = getattr(value, "shape", None)
    return shape is not None and len(shape) >= 4  # (T, C, H, W) frames


def clean_metrics(run: Run, metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[key] = float(value)
            continue
        if isinstance(value, numbers.Real):
            out[key] = float(value)
            continue
        if getattr(value, "shape", None) == () or getattr(value, "ndim", None) == 0:
            out[key] = float(value)
            continue
        if _is_video_like(value):
            _warn_once(run, f"video:{key}", f"metric {key!r} looks like a video and was dropped: polx logs no videos")
        else:
            _warn_once(run, f"type:{key}", f"metric {key!r} is not a number ({type(value).__name__}) and was dropped")
    return out


def clean_images(run: Run, images: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (images or {}).items():
        suffix = Path(str(value)).suffix.lower() if isinstance(value, (str, Path)) else ""
        if suffix in _IMAGE_SUFFIXES:
            out[key] = str(value)
        elif suffix in _VIDEO_SUFFIXES or _is_video_like(value):
            _warn_once(run, f"video:{key}", f"image {key!r} is a video and was dropped: polx logs no videos")
        else:
            _warn_once(run, f"image:{key}", f"image {key!r} must be the path of a PNG or JPEG file; dropped")
    return out


def log(plugins: Any, run: Run, step: int, metrics: Mapping[str, Any], images: Mapping[str, Any] | None = None) -> None:
    """Send one record to every ``log_metrics`` implementation, each in isolation."""
    clean = clean_metrics(run, metrics)
    pictures = clean_images(run, images)
    for impl in plugins.pm.hook.log_metrics.get_hookimpls():
        if impl.plugin_name in run.failed_sinks:
            continue
        try:
            impl.function(run=run, step=step, metrics=clean, images=pictures)
        except RequiredLogError:
            raise
        except Exception as exc:
            run.failed_sinks.add(impl.plugin_name)
            warnings.warn(
                f"log_metrics of plugin {impl.plugin_name!r} failed and is skipped from now on: {type(exc).__name__}: {exc}",
                stacklevel=2,
            )

"""Which mode a tracker runs in, and the image handling both trackers share.

Mode rule (the same for SwanLab and W&B): the config's ``mode`` if set; else ``<TRACKER>_MODE``
from the environment; else ``online`` when ``<TRACKER>_API_KEY`` is in the environment, otherwise
``offline`` with a one-line notice. Keys are only ever read from the environment, by the
tracker library itself.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Mapping

from polx.errors import UserInputError


def resolve_mode(
    tracker: str, configured: str | None, modes: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """``(mode, notice)``; ``notice`` is a line to show the user, or None.

    ``tracker`` is the environment-variable prefix in lower case (``swanlab``, ``wandb``).
    """
    environ = os.environ if environ is None else environ
    prefix = tracker.upper()
    if configured is not None:
        if configured not in modes:  # the config class validates too; this guards direct callers
            raise UserInputError(f"loggers.{tracker}.mode: must be one of {', '.join(modes)}; got {configured!r}")
        return configured, None
    from_env = environ.get(f"{prefix}_MODE", "").strip()
    if from_env:
        if from_env.lower() not in modes:
            raise UserInputError(
                f"{prefix}_MODE={from_env!r} is not a {tracker} mode; use one of {', '.join(modes)} "
                f"(or set loggers.{tracker}.mode)"
            )
        return from_env.lower(), None
    if environ.get(f"{prefix}_API_KEY", "").strip():
        return "online", None
    return "offline", f"{tracker}: no {prefix}_API_KEY in the environment, logging offline"


class ImageSender:
    """Logs still images to a tracker; a bad image warns once per key and is skipped, never fatal.

    Images go in their own ``log`` call after the record's scalars, so a missing file, an
    unreadable PNG or a failed upload never costs the scalars of the same step.
    """

    def __init__(self, tracker: str, make_image: Callable[[str], Any]):
        self.tracker = tracker
        self.make_image = make_image  # path -> the tracker's image object (swanlab.Image, wandb.Image)
        self._warned: set[str] = set()

    def send(self, log: Callable[[dict], Any], images: Mapping[str, str] | None) -> None:
        media = {}
        for key, path in (images or {}).items():
            try:
                media[key] = self.make_image(str(path))
            except Exception as exc:
                self._warn(key, exc)
        if not media:
            return
        try:
            log(media)
        except Exception as exc:
            for key in media:
                self._warn(key, exc)

    def _warn(self, key: str, exc: BaseException) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"{self.tracker}: image {key!r} was not logged: {type(exc).__name__}: {exc}", stacklevel=4)


class TrackerLogger:
    """A SwanLab or W&B run as a polx logger: scalars first, then images (never fatal); finished on close."""

    def __init__(self, tracker: str, tracker_run: Any, make_image: Callable[[str], Any], after_finish: Callable[[], Any] | None = None):
        self._run = tracker_run
        self._images = ImageSender(tracker, make_image)
        self._after_finish = after_finish

    def log(self, step: int, metrics: Mapping[str, float], images: Mapping[str, str]) -> None:
        if metrics:
            self._run.log(dict(metrics), step=step)
        self._images.send(lambda media: self._run.log(media, step=step), images)

    def close(self) -> None:
        self._run.finish()
        if self._after_finish is not None:
            self._after_finish()

"""PushT (Diffusion Policy's benchmark) for polx.

Modules: ``config`` (cheap, attrs only), ``geometry`` (T, goal, keypoints, coverage), ``sim``
(pymunk physics), ``raster`` and ``render`` (pixel-exact frames without pygame, trajectory PNGs),
``env`` (``PushTEnv``), ``expert`` (sampling-based pushing expert), ``demos`` (datasets),
``adapter`` (``PushTAdapter``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PushTEnv"]


def __getattr__(name: str) -> Any:
    # lazy, so importing the cheap config module does not load pymunk
    if name == "PushTEnv":
        from polx_envs.pusht.env import PushTEnv

        return PushTEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Hook specifications: the only doors between polx core and its plugins.

Every hook here is documented, with its signature and an example, in ``docs/plugin_hooks.md``;
``tests/test_docs.py`` fails when one is not. Core calls plugins only through these hooks and the
component registry that ``register_components`` fills, never by importing a plugin package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps torch out of import time
    import torch

    from polx.components import Episode, ObsActionSpec, Run

hookspec = pluggy.HookspecMarker("polx")
#: what plugins mark their hook implementations with (``from polx import hookimpl`` re-exports it)
hookimpl = pluggy.HookimplMarker("polx")


@hookspec
def register_components(register: Callable[..., None]) -> None:
    """Declare the components a plugin provides.

    Call ``register(kind, name, config_cls, factory, help, **extras)`` once per component, with
    ``kind`` one of ``head``, ``objective``, ``env``, ``logger``, ``dataset``. ``config_cls`` is an attrs
    frozen keyword-only class holding every option with its default; ``factory`` builds the
    component (a callable, or a ``"module:attr"`` string imported only when first used).
    Extras: ``preset`` (nested dict of config overrides applied when the component is chosen)
    and, for heads, ``default_objective``. Must be cheap: no torch import.

    :param register: the registry's callback, bound to the calling plugin's name.
    """


@hookspec(firstresult=True)
def build_head(name: str, config: Any, spec: "ObsActionSpec") -> "torch.nn.Module | None":
    """Build the network for head ``name``.

    Stops at first non-None result. The core's fallback calls the factory registered for
    ``name`` as ``factory(config, spec)``; a plugin implements this hook only to wrap or replace
    that construction.

    :param name: the head's registered name.
    :param config: the head's resolved config (an instance of its registered config class).
    :param spec: observation/action shapes (``action_dim``, ``horizon``, ``n_obs_steps``, ``cond_dim``).
    :returns: a ``torch.nn.Module`` with ``spec`` and ``get_optim_groups(weight_decay)``.
    """


@hookspec(firstresult=True)
def compute_loss(objective: Any, head: "torch.nn.Module", batch: dict) -> "tuple[torch.Tensor, dict] | None":
    """Training loss of ``objective`` for ``head`` on ``batch``.

    Stops at first non-None result. The core's fallback calls ``objective.compute_loss(head, batch)``.

    :param objective: the objective instance built by its registered factory (``objective.name``).
    :param head: the head module.
    :param batch: ``action`` (B, T, A) normalized, ``cond`` (B, To, D), ``action_is_pad`` (B, T) bool
        and optionally ``action_mask`` broadcastable to (B, T, A); masked or padded entries must not
        change the loss.
    :returns: ``(loss, metrics)``: a scalar tensor and a dict of floats to log.
    """


@hookspec(firstresult=True)
def sample(
    objective: Any,
    head: "torch.nn.Module",
    cond: "torch.Tensor",
    num_steps: "int | None",
    generator: "torch.Generator | None",
) -> "torch.Tensor | None":
    """Draw a normalized action chunk from ``head`` with ``objective``'s sampler.

    Stops at first non-None result. The core's fallback calls
    ``objective.sample(head, cond, num_steps, generator)``.

    :param cond: condition (B, To, D) from the observation encoder.
    :param num_steps: sampling steps; ``None`` means the objective's default.
    :param generator: source of the initial noise, for reproducible samples.
    :returns: the chunk, shape (B, horizon, action_dim).
    """


@hookspec
def log_metrics(run: "Run", step: int, metrics: dict, images: dict) -> None:
    """Send scalars and images to a sink.

    Every implementation is called, each in isolation: one that raises is reported once and
    skipped from then on, never fatal. The core's own implementation forwards to the loggers the
    run activated (``run.loggers``); implement this hook for a sink that wants everything.

    :param run: the active run (directory, resolved config, loggers).
    :param step: the global step.
    :param metrics: name -> float.
    :param images: name -> path of a PNG on disk (never a video).
    """


@hookspec(firstresult=True)
def render_trajectory(env: Any, episode: "Episode", path: str) -> "str | None":
    """Draw an executed trajectory as a PNG at ``path``.

    Stops at first non-None result: the plugin that owns ``env`` draws and returns ``path``;
    the others return ``None``.

    :param env: the gymnasium env the episode ran in, left at its final state.
    :param episode: what happened: ``seed``, executed ``actions`` (T, A), ``rewards``, ``infos``.
    :param path: where to write the PNG (its directory exists).
    """

"""What each kind of component is: the small protocols core relies on. No torch import here.

A plugin registers, for each component, a config class and a factory (see ``hookspecs``):

========== ================================ =========================================
kind       factory signature                 returns
========== ================================ =========================================
head       ``factory(config, spec)``         ``torch.nn.Module`` (``HeadModule``)
objective  ``factory(config)``               an ``Objective``
env        ``factory(config)``               an ``EnvAdapter``
logger     ``factory(config, run)``          a ``Logger``
dataset    ``factory(config)``               a ``DatasetFormat``
========== ================================ =========================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

import attrs

from polx.errors import UserInputError

if TYPE_CHECKING:  # pragma: no cover
    import gymnasium
    import numpy as np
    import torch

KINDS = ("head", "objective", "env", "logger", "dataset")


@attrs.define(frozen=True, kw_only=True)
class ObsActionSpec:
    """Shapes a head is built for. The condition has one ``cond_dim`` vector per observation step."""

    action_dim: int
    horizon: int
    n_obs_steps: int
    cond_dim: int
    #: ``(name, start, stop)`` per action group in the head's action (``polx.policy.layout``);
    #: empty: one group of every dimension. Heads with per-group experts read it.
    action_groups: tuple[tuple[str, int, int], ...] = ()

    def groups(self) -> tuple[tuple[str, int, int], ...]:
        """``action_groups``, or one group ``action`` covering ``[0, action_dim)``."""
        return self.action_groups or (("action", 0, self.action_dim),)


@runtime_checkable
class HeadModule(Protocol):
    """A head is a ``torch.nn.Module`` with these two members (its ``forward`` is its own)."""

    spec: ObsActionSpec

    def get_optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups; every parameter in exactly one group."""


class DenoisingHead(Protocol):
    """The call the ``ddpm`` objective (and any ``forward(sample, t, cond)`` objective) makes.

    ``sample`` (B, horizon, action_dim) is the noised normalized chunk, ``t`` (B,) the step
    (``ddpm``: integer timesteps in ``[0, objective.num_train_timesteps)``; a flow objective:
    float times in ``[0, 1]``), ``cond`` (B, n_obs_steps, cond_dim) the observation condition.
    Returns (B, horizon, action_dim): the predicted noise, or the clean chunk when the objective's
    ``prediction_type`` is ``sample``.
    """

    spec: ObsActionSpec

    def __call__(self, sample: "torch.Tensor", t: "torch.Tensor", cond: "torch.Tensor") -> "torch.Tensor": ...


class MeanFlowHead(Protocol):
    """The call the ``imf`` objective makes: ``head(sample, r, t, cond) -> (u, v)``.

    ``sample`` (B, horizon, action_dim) is ``z = (1 - t) x + t e``; ``r`` and ``t`` (B,) are float
    times in ``[0, 1]`` with ``r <= t`` (``t = 1`` is pure noise). ``u`` (B, horizon, action_dim)
    is the average velocity over ``[r, t]``; ``v`` the instantaneous velocity from a v-head, or
    ``None`` without one. ``u`` must be differentiable in ``sample``, ``r`` and ``t`` with
    forward-mode autodiff (``torch.func.jvp``), so no in-place ops on inputs.
    """

    spec: ObsActionSpec

    def __call__(
        self, sample: "torch.Tensor", r: "torch.Tensor", t: "torch.Tensor", cond: "torch.Tensor"
    ) -> "tuple[torch.Tensor, torch.Tensor | None]": ...


@runtime_checkable
class Objective(Protocol):
    """A training objective and its sampler, working on normalized action chunks."""

    name: str
    config: Any
    #: steps ``sample`` uses when asked for ``num_steps=None``
    default_num_steps: int

    def compute_loss(self, head: "torch.nn.Module", batch: dict) -> "tuple[torch.Tensor, dict]":
        """Scalar loss and a dict of float metrics; see ``hookspecs.compute_loss`` for ``batch``."""

    def sample(
        self,
        head: "torch.nn.Module",
        cond: "torch.Tensor",
        num_steps: int | None,
        generator: "torch.Generator | None",
    ) -> "torch.Tensor":
        """Normalized chunk (B, head.spec.horizon, head.spec.action_dim)."""


@runtime_checkable
class Logger(Protocol):
    """A metrics sink. Images arrive as paths of PNG files."""

    def log(self, step: int, metrics: Mapping[str, float], images: Mapping[str, str]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class EnvAdapter(Protocol):
    """Everything polx needs to know about one environment. Must be picklable (rollout workers).

    ``shape_meta`` names the policy's observation keys and the action shape::

        {"obs": {"image": {"shape": [3, 96, 96], "type": "rgb"},
                 "agent_pos": {"shape": [2], "type": "low_dim"}},
         "action": {"shape": [2]}}

    Observations returned by ``make_env()`` envs are dicts with exactly those keys (images CHW
    float32 in [0, 1], low-dim float32); ``dataset_obs`` turns a replay buffer's arrays into the
    same keys, so training data and rollouts agree.
    """

    name: str
    shape_meta: dict

    def make_env(self) -> "gymnasium.Env": ...

    def dataset_obs(self, data: Mapping[str, "np.ndarray"]) -> dict[str, "np.ndarray"]:
        """Whole-dataset conversion: raw ``data/<key>`` arrays -> ``{obs_key: (N, ...), "action": (N, A)}``."""

    def default_dataset(self, progress: bool = True) -> Path:
        """A cached demonstration dataset, generated on first use (announced, with progress)."""

    def generate_demos(
        self, out: Path, episodes: int, seed: int = 0, workers: int = 1, keep_all: bool = False, progress: bool = True
    ) -> dict:
        """Write ``episodes`` expert demonstrations to a zarr replay buffer at ``out``; returns a summary dict."""


@runtime_checkable
class DatasetReader(Protocol):
    """One dataset opened read-only and validated: equal-length step arrays cut into episodes.

    Everything else (whole loads, episodes, lazy arrays, ``polx data info``, training) is built
    on these members in ``polx.data.formats``. ``read`` may touch only the steps asked for.
    """

    path: Path
    format: str  # the registered format name
    episode_ends: "np.ndarray"  # (E,) int64, exclusive end step of each episode, strictly increasing

    def keys(self) -> list[str]:
        """The array names, sorted."""

    def array_info(self, key: str) -> tuple[tuple[int, ...], "np.dtype"]:
        """Whole-array shape ``(N, ...)`` and dtype, without reading."""

    def read(self, key: str, start: int, stop: int) -> "np.ndarray":
        """Steps ``[start, stop)`` of ``key``; DatasetError naming the file and key when unreadable."""


@runtime_checkable
class DatasetFormat(Protocol):
    """What a ``dataset`` factory returns: recognises and opens one on-disk layout."""

    name: str

    def detect(self, path: Path) -> bool:
        """Cheaply (names and small metadata files only): does ``path`` look like this format?"""

    def open(self, path: Path) -> DatasetReader:
        """Open read-only and validate; DatasetError names the file and key that is wrong."""


@runtime_checkable
class Expert(Protocol):
    """A teacher for any state the env can be in: what an ``EnvAdapter.make_expert()`` returns.

    Optional: an adapter with ``make_expert`` lets ``polx dagger`` label the states its policy
    visits. ``act`` must answer for the state ``env`` is in now (closed loop), not for where a
    plan made from earlier states expected it to be; it may keep a plan while the state is the
    one the plan predicted. ``record`` gives the same state as one row of the env's dataset
    layout (the raw arrays ``dataset_obs`` reads, ``action`` excluded).
    """

    def reset(self) -> None:
        """Forget everything from the previous episode."""

    def act(self, env: "gymnasium.Env") -> "np.ndarray":
        """The expert's action for the current state of ``env`` (an env from ``make_env()``)."""

    def record(self, env: "gymnasium.Env") -> dict[str, "np.ndarray"]:
        """``{raw dataset key: per-step array}`` for the current state of ``env``."""


@attrs.define(kw_only=True)
class Episode:
    """One rollout, as handed to ``render_trajectory``."""

    seed: int
    actions: "np.ndarray"  # (T, A): the actions actually executed, step by step
    rewards: "np.ndarray"  # (T,)
    infos: list[dict] = attrs.field(factory=list)
    index: int = 0  # episode number within its rollout batch


@attrs.define(kw_only=True)
class Run:
    """The active run, as loggers and ``log_metrics`` implementations see it."""

    dir: Path
    name: str
    config: dict  # the resolved config as plain data (no secrets)
    loggers: dict[str, Any] = attrs.field(factory=dict)  # name -> Logger instance
    failed_loggers: set[str] = attrs.field(factory=set)  # loggers that raised once, now skipped
    failed_sinks: set[str] = attrs.field(factory=set)  # plugins whose log_metrics raised once, now skipped
    warned: set[str] = attrs.field(factory=set)  # dropped-value warnings already given (once each)
    resumed: bool = False
    #: on resume, the checkpoint's step: records the interrupted process logged after it are
    #: superseded by the resumed run (loggers that can rewrite history drop them)
    resume_step: int | None = None


#: the plugin name core registers its own hook implementations under (polx.builtin)
CORE_PLUGIN_NAME = "polx.core"


def check_pairing(head: Any, objective: Any) -> None:
    """Refuse (exit 2) a head and objective that declare they do not go together.

    The pair is accepted when the head lists the objective in ``objectives``, when the
    objective lists the head in ``heads``, or when neither declares anything.
    """
    if head.objectives is None and objective.heads is None:
        return
    if objective.name in (head.objectives or ()) or head.name in (objective.heads or ()):
        return
    if head.objectives:
        fix = f"pass --objective {' or '.join(head.objectives)}, or a head that supports {objective.name!r}"
    else:
        fix = f"objective {objective.name!r} supports the heads {', '.join(objective.heads or ())}"
    raise UserInputError(
        f"head {head.name!r} does not support objective {objective.name!r} (docs/plugin_hooks.md, head protocols); {fix}"
    )

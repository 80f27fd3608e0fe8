"""Who labels and who acts in ``polx dagger``: the env's scripted expert, or trained polx checkpoints.

A teacher labels every step of an episode (``label(env) -> (action, stored extras)``):

- ``ExpertTeacher``: the adapter's ``make_expert()`` (``--teacher expert``).
- ``PolicyTeacher``: a polx checkpoint of any head (``--teacher CKPT``). It observes the state
  through the env adapter's ``observe(env, obs_meta)`` in its own observation type (a keypoints
  teacher of an image student), keeps its own observation history, and predicts a fresh chunk at
  every step: the label is the chunk's action for that step, never a stale queued one. Its
  observations are stored beside the labels as ``teacher_<key>`` rows.

An actor drives the env (``act(env, obs)``): the student's runtime on the env's observations, or,
in Phase I, a teacher checkpoint's chunked runtime on its own observations.

``PolicySpec`` is a checkpoint in picklable form (config, env adapter, weights as bytes), so
every worker of ``polx.executor`` rebuilds the same policies; ``load_checkpoint_spec`` checks a
checkpoint against the env before anything is written.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Mapping

import attrs
import numpy as np
import torch

from polx.errors import UserInputError
from polx.policy.runtime import ChunkRuntime

TEACHER_PREFIX = "teacher_"  # stored teacher observations: teacher_<obs key>


@attrs.define(kw_only=True)
class PolicySpec:
    """A trained policy as a worker rebuilds it: its run config, its own env adapter, its weights."""

    path: str  # the checkpoint file, for messages and the run's record
    step: int
    config: Any  # RunConfig of the run that wrote the checkpoint
    adapter: Any  # that run's env adapter: its shape_meta is the policy's observation spec
    weights: bytes  # torch.save of the evaluation (EMA) state dict, normaliser included

    @property
    def obs_meta(self) -> dict:
        return self.adapter.shape_meta["obs"]

    def build(self, plugins: Any) -> Any:
        from polx.data.normalizer import Normalizer
        from polx.policy.policy import build_policy

        state = torch.load(io.BytesIO(self.weights), map_location="cpu", weights_only=True)
        policy = build_policy(plugins, self.config, self.adapter.shape_meta, Normalizer.from_state_dict(state, prefix="normalizer."))
        policy.load_state_dict(state)
        return policy.eval()


class StepRuntime(ChunkRuntime):
    """A chunk runtime that predicts afresh at every step and returns the chunk's first action (the
    action for the newest observation): a per-step label from the policy's own history. The whole
    predicted chunk (``horizon`` actions, entry ``n_obs_steps - 1`` the returned one) stays in
    ``last_chunk``."""

    last_chunk: np.ndarray | None = None

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        self.actions.clear()
        return super().act(obs)

    def _predict_chunk(self, history: list[Mapping[str, np.ndarray]]) -> np.ndarray:
        out = self._predict(history)
        self.last_chunk = out["action_pred"][0].float().cpu().numpy()  # (horizon, A)
        return out["action"][0].float().cpu().numpy()  # (n_action_steps, A)


class ExpertTeacher:
    """The env's scripted expert: ``act(env)`` for the label; it stores nothing besides."""

    kind = "expert"

    def __init__(self, adapter: Any):
        self.expert = adapter.make_expert()
        self.seconds = 0.0  # spent labelling since construction

    def reset(self, seed: int) -> None:
        self.expert.reset()

    def label(self, env: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        started = time.perf_counter()
        action = np.asarray(self.expert.act(env), dtype=np.float32)
        self.seconds += time.perf_counter() - started
        return action, {}


class PolicyTeacher:
    """A checkpoint labelling every step from its own observation history (see the module docs)."""

    kind = "policy"

    def __init__(self, runtime: StepRuntime, adapter: Any, obs_meta: dict):
        self.runtime, self.adapter, self.obs_meta = runtime, adapter, obs_meta
        self.seconds = 0.0

    def reset(self, seed: int) -> None:
        self.runtime.reset(seed=seed)

    def label(self, env: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The action for this step, plus the teacher's observations and its whole chunk (``CHUNK_KEY``,
        stored where ``dagger.label=chunk`` puts it in the layout)."""
        from polx.data.dataset import CHUNK_KEY

        started = time.perf_counter()
        obs = self.adapter.observe(env, self.obs_meta)
        with torch.no_grad():
            action = np.asarray(self.runtime.act(obs), dtype=np.float32)
        self.seconds += time.perf_counter() - started
        return action, {**{TEACHER_PREFIX + key: np.asarray(value) for key, value in obs.items()}, CHUNK_KEY: self.runtime.last_chunk}


class Actor:
    """Drives the env: a chunked runtime on the env's observations, or on its own through ``adapter.observe``."""

    def __init__(self, runtime: ChunkRuntime, adapter: Any = None, obs_meta: dict | None = None):
        self.runtime, self.adapter, self.obs_meta = runtime, adapter, obs_meta

    @property
    def normalizer(self) -> Any:
        return self.runtime.policy.normalizer

    def reset(self, seed: int) -> None:
        self.runtime.reset(seed=seed)

    def act(self, env: Any, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.obs_meta is not None:
            obs = self.adapter.observe(env, self.obs_meta)
        return self.runtime.act(obs)


def make_teacher(plugins: Any, adapter: Any, spec: PolicySpec | None, num_steps: int | None = None) -> ExpertTeacher | PolicyTeacher:
    """The teacher for one process: the expert when ``spec`` is None, else the checkpoint (per-step runtime)."""
    if spec is None:
        return ExpertTeacher(adapter)
    policy = spec.build(plugins)
    return PolicyTeacher(StepRuntime(policy, num_steps=_num_steps(spec, num_steps)), adapter, spec.obs_meta)


def make_source_actor(plugins: Any, adapter: Any, spec: PolicySpec) -> Actor:
    """A Phase I source: the checkpoint acting in chunks, as its own evaluation does, on its own observations."""
    policy = spec.build(plugins)
    obs_meta = None if _same_obs(spec.obs_meta, adapter.shape_meta["obs"]) else spec.obs_meta
    return Actor(ChunkRuntime(policy, num_steps=_num_steps(spec, None)), adapter, obs_meta)


def _num_steps(spec: PolicySpec, num_steps: int | None) -> int | None:
    return num_steps if num_steps is not None else spec.config.eval.num_steps


def _same_obs(a: Mapping, b: Mapping) -> bool:
    return {k: tuple(v["shape"]) for k, v in a.items()} == {k: tuple(v["shape"]) for k, v in b.items()}


# ---------------------------------------------------------------------------------------------
# a checkpoint as teacher or Phase I source: found, read and checked before anything is written


def checkpoint_file(path: Path, what: str = "--teacher") -> Path:
    """A ``.ckpt`` file, or a run directory (its ``checkpoints/latest.ckpt``)."""
    from polx.base.checkpoint import LATEST

    path = Path(path)
    if path.is_dir() and (path / "checkpoints" / LATEST).is_file():
        return path / "checkpoints" / LATEST
    if path.is_dir():
        raise UserInputError(f"{what} {str(path)!r}: a directory without checkpoints/{LATEST}; pass a polx run directory or a .ckpt file")
    if not path.exists():
        raise UserInputError(f"{what} {str(path)!r} does not exist; pass a polx run directory or a .ckpt file" + (" (or 'expert')" if what == "--teacher" else ""))
    return path


def load_checkpoint_spec(plugins: Any, path: Path, adapter: Any, env_name: str, what: str = "--teacher") -> PolicySpec:
    """``path``'s policy as a ``PolicySpec``, checked against the student's env; ``UserInputError`` (exit 2) otherwise.

    Refused: a file that is not a polx checkpoint; one written for another env; one whose action
    shape differs from the env's; an env whose adapter cannot show the checkpoint its own
    observations (no ``observe``, or ``observe`` refusing its keys)."""
    from polx.base.checkpoint import check_complete, load_checkpoint, model_state_from
    from polx.errors import ConfigError
    from polx.runs import config_from_saved

    path = checkpoint_file(path, what)
    try:
        state = load_checkpoint(path)
        check_complete(state, path)
    except UserInputError as exc:
        raise UserInputError(f"{what}: {exc}") from None
    try:
        config = config_from_saved(plugins, state["config"], [])
    except (ConfigError, UserInputError) as exc:
        raise UserInputError(f"{what} {str(path)!r}: its config cannot be read by this polx: {exc}") from None
    problems = []
    if config.components.env != env_name:
        problems.append(f"it was trained on env {config.components.env!r}, this run's env is {env_name!r} (a teacher acts in the student's env)")
    try:
        teacher_adapter = plugins.build_env(config)
    except (ConfigError, UserInputError) as exc:
        raise UserInputError(f"{what} {str(path)!r}: {'; '.join(problems + [f'its env cannot be built here: {exc}'])}") from None
    theirs, ours = tuple(teacher_adapter.shape_meta["action"]["shape"]), tuple(adapter.shape_meta["action"]["shape"])
    if theirs != ours:
        problems.append(f"it acts with shape {theirs}, env {env_name!r} with this config takes actions of shape {ours}")
    if problems:
        raise UserInputError(f"{what} {str(path)!r} cannot teach here: " + "; ".join(problems))
    obs_meta = teacher_adapter.shape_meta["obs"]
    if not _same_obs(obs_meta, adapter.shape_meta["obs"]):
        if not callable(getattr(adapter, "observe", None)):
            raise UserInputError(
                f"{what} {str(path)!r} observes {_describe(obs_meta)} and the student {_describe(adapter.shape_meta['obs'])}; "
                f"env {env_name!r} cannot give a teacher its own observation (its adapter has no observe(env, obs_meta); "
                "see 'Teachers that observe differently' in docs/plugin_hooks.md)"
            )
        env = adapter.make_env()
        try:
            env.reset(seed=0)
            got = adapter.observe(env, obs_meta)
        finally:
            env.close()
        wrong = [k for k, spec in obs_meta.items() if k not in got or tuple(np.shape(got[k])) != tuple(spec["shape"])]
        if wrong:
            raise UserInputError(f"{what} {str(path)!r}: env {env_name!r}'s observe() does not give {', '.join(wrong)} as the checkpoint observes it")
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model_state_from(state).items()}, buffer)
    return PolicySpec(path=str(path.resolve()), step=int(state["global_step"]), config=config, adapter=teacher_adapter, weights=buffer.getvalue())


def intermediate_checkpoints(teacher: Path, listed: tuple[str, ...]) -> list[Path]:
    """``dagger.phase1_checkpoints`` as files: paths as given, or ``all``: every other ``.ckpt`` of the
    teacher's run (its top-k), in step order. The teacher's own file is never listed twice."""
    from polx.base.checkpoint import TopK

    teacher = Path(teacher).resolve()
    found: list[Path] = []
    for item in listed:
        if item == "all":  # names are epoch=EEEE-step=SSSSSSS-..., zero-padded: name order is step order
            found += sorted((p.resolve() for _, p in TopK(teacher.parent, 0).kept()), key=lambda p: p.name)
        else:
            found.append(checkpoint_file(Path(item), "dagger.phase1_checkpoints").resolve())
    out: list[Path] = []
    for p in found:
        if p != teacher and p not in out and not _same_file(p, teacher):
            out.append(p)
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _describe(obs_meta: Mapping) -> str:
    return ", ".join(f"{k} {tuple(v['shape'])}" for k, v in obs_meta.items())

"""Rollouts: ``eval.n_test`` test seeds and ``eval.n_train`` train seeds, over ``eval.n_envs`` processes.

Each episode resets its env and the policy's sampling noise with the episode's seed, so the
results do not depend on how episodes are spread over processes. With ``n_envs == 1`` (and
``exec.backend=local``) everything runs in this process, on the policy's device. Otherwise the
workers of ``polx.executor`` (spawned processes, or Ray actors with ``exec.backend=ray``) each
rebuild the same plugin set, the policy (on CPU, from its weights) and an env from the pickled
adapter, and run episodes as they are handed out; the trajectories to draw are then replayed
here from their executed actions.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import numpy as np
import torch
from tqdm import tqdm

from polx.components import Episode
from polx.data.normalizer import Normalizer
from polx.errors import PolxError
from polx.eval.metrics import episode_caption, episode_score, summarize
from polx.plugins import CORE_PLUGIN_NAME, load_plugins
from polx.policy.policy import Policy, build_policy
from polx.policy.runtime import ChunkRuntime


@attrs.define(kw_only=True)
class RolloutResult:
    metrics: dict[str, float]
    images: dict[str, str]  # logger name -> PNG path
    test: list[Episode]
    train: list[Episode]


def run_episode(env: Any, runtime: ChunkRuntime, seed: int, max_steps: int, index: int = 0) -> Episode:
    """One episode of at most ``max_steps`` steps; the env is left at its final state."""
    obs, _ = env.reset(seed=seed)
    runtime.reset(seed=seed)
    actions, rewards, infos = [], [], []
    for t in range(max_steps):
        action = runtime.act(obs)
        if not np.all(np.isfinite(action)):  # an env may clip or accept inf/NaN and score it: never
            raise PolxError(
                f"the policy produced a non-finite action at step {t} of the episode with seed {seed}; "
                "no score is reported (are the checkpoint's weights or the dataset's normalization non-finite?)"
            )
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(float(reward))
        infos.append(info)
        if terminated or truncated:
            break
    return Episode(seed=seed, actions=np.asarray(actions), rewards=np.asarray(rewards), infos=infos, index=index)


class _EpisodeProgress:
    """One tick per finished episode: the tqdm bar on a terminal, and/or a line through ``say``
    (``rollout episode 3/50: test seed 100002, score 0.912, 287 steps``) when output goes to a file."""

    def __init__(self, total: int, bar: Any, say: Any = None):
        self.total, self.bar, self.say, self.count = total, bar, say, 0

    def update(self, kind: str | None = None, episode: Episode | None = None) -> None:
        self.count += 1
        self.bar.update()
        if self.say is not None and episode is not None:
            self.say(
                f"rollout episode {self.count}/{self.total}: {kind} seed {episode.seed}, "
                f"score {episode_score(episode):.3f}, {len(episode.rewards)} steps"
            )


def run_rollouts(
    plugins: Any, config: Any, adapter: Any, policy: Policy, *, media_dir: Path | None = None, progress: bool = False,
    say: Any = None,
) -> RolloutResult:  # fmt: skip
    """Roll out ``policy`` under ``config.eval``; draw the first ``eval.n_vis`` test episodes into ``media_dir``.

    ``progress``: a tqdm bar (a terminal); ``say``: called with one line per finished episode
    (output to a file, where a bar would be one unreadable line)."""
    ev = config.eval
    jobs = [("test", ev.test_start_seed + i, i) for i in range(ev.n_test)]
    jobs += [("train", ev.train_start_seed + i, i) for i in range(ev.n_train)]
    was_training = policy.training
    policy.eval()
    try:
        bar = _EpisodeProgress(len(jobs), tqdm(total=len(jobs), desc="rollout", unit="episode", disable=not progress, leave=False), say)
        with bar.bar:
            if config.exec.backend == "local" and (ev.n_envs == 1 or len(jobs) <= 1):
                done, images = _run_here(plugins, config, adapter, policy, jobs, media_dir, bar)
            else:
                done = _run_in_workers(plugins, config, adapter, policy, jobs, bar)
                images = _draw(plugins, adapter, [done[("test", i)] for i in range(min(ev.n_vis, ev.n_test))], media_dir)
    finally:
        policy.train(was_training)
    test = [done[("test", i)] for i in range(ev.n_test)]
    train = [done[("train", i)] for i in range(ev.n_train)]
    return RolloutResult(metrics={**summarize("test", test), **summarize("train", train)}, images=images, test=test, train=train)


def _run_here(plugins, config, adapter, policy, jobs, media_dir, bar) -> tuple[dict, dict]:
    env = adapter.make_env()
    runtime = ChunkRuntime(policy, num_steps=config.eval.num_steps)
    done: dict[tuple[str, int], Episode] = {}
    images: dict[str, str] = {}
    try:
        for kind, seed, index in jobs:
            episode = run_episode(env, runtime, seed, config.eval.max_steps, index)
            done[(kind, index)] = episode
            if kind == "test" and index < config.eval.n_vis and media_dir is not None:
                images.update(_render(plugins, env, episode, media_dir))
            bar.update(kind, episode)
    finally:
        env.close()
    return done, images


def _draw(plugins, adapter, episodes: list[Episode], media_dir: Path | None) -> dict[str, str]:
    """Replay each episode's executed actions in a fresh env here, then draw it."""
    images: dict[str, str] = {}
    if media_dir is None:
        return images
    for episode in episodes:
        env = adapter.make_env()
        try:
            env.reset(seed=episode.seed)
            for action in episode.actions:
                env.step(action)
            images.update(_render(plugins, env, episode, media_dir))
        finally:
            env.close()
    return images


def _render(plugins, env, episode: Episode, media_dir: Path) -> dict[str, str]:
    """Draw one trajectory PNG; a drawing that fails warns and is skipped (a picture never costs a rollout)."""
    path = media_dir / f"episode_{episode.index}.png"
    tmp = media_dir / f".episode_{episode.index}.partial.png"  # drawn aside, renamed: never a torn PNG
    try:
        media_dir.mkdir(parents=True, exist_ok=True)
        drawn = plugins.hook.render_trajectory(env=env, episode=episode, path=str(tmp))
        if drawn is not None:
            stamp_caption(Path(drawn), episode_caption(episode))
            os.replace(drawn, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        warnings.warn(
            f"drawing the trajectory of episode {episode.index} (seed {episode.seed}) failed and is skipped: "
            f"{type(exc).__name__}: {exc}",
            stacklevel=2,
        )
        return {}
    if drawn is None:
        warnings.warn(f"no plugin draws trajectories of {type(getattr(env, 'unwrapped', env)).__name__}; no PNG written", stacklevel=2)
        return {}
    return {f"test/trajectory_{episode.index}": str(path)}


def stamp_caption(path: Path, caption: str) -> None:
    """Add a white strip with ``caption`` above the PNG at ``path`` (rewritten in place), so a
    trajectory picture says which seed it is and what it scored wherever it is shown."""
    from PIL import Image, ImageDraw, ImageFont

    with Image.open(path) as drawn:
        drawn.load()
        picture = drawn.convert("RGB")
    size = max(10, min(18, picture.width // 24))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        font = ImageFont.load_default()
    strip = size + 8
    out = Image.new("RGB", (picture.width, picture.height + strip), "white")
    out.paste(picture, (0, strip))
    ImageDraw.Draw(out).text((4, 4), caption, fill="black", font=font)
    out.save(path, format="PNG")


# ---------------------------------------------------------------------------------------------
# worker processes


def plugin_recipe(plugins: Any) -> list[tuple[str, Any]]:
    """How a spawned process rebuilds this exact plugin set: (name, module name or picklable object)."""
    recipe = []
    for name, plugin in plugins.pm.list_name_plugin():
        if name == CORE_PLUGIN_NAME or plugin is None:
            continue
        recipe.append((name, plugin.__name__ if isinstance(plugin, ModuleType) else plugin))
    return recipe


def load_recipe(recipe: list[tuple[str, Any]]) -> Any:
    extra = [(name, importlib.import_module(p) if isinstance(p, str) else p) for name, p in recipe]
    return load_plugins(entry_points=[], extra=extra)


def worker_runtime(recipe, config, adapter, weights: bytes, *, plugins: Any = None) -> ChunkRuntime:
    """In a spawned worker: one torch thread, the plugin set rebuilt, the policy from its weights
    (in this process, with ``plugins`` given: the threads and plugins are left as they are)."""
    if plugins is None:
        torch.set_num_threads(1)  # n_envs processes share the cores
        plugins = load_recipe(recipe)
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    policy = build_policy(plugins, config, adapter.shape_meta, Normalizer.from_state_dict(state, prefix="normalizer."))
    policy.load_state_dict(state)
    return ChunkRuntime(policy.eval(), num_steps=config.eval.num_steps)


class EpisodeWorker:
    """A worker of ``polx.executor``: its env and policy runtime built once, then one episode per job ``(kind, seed, index)``."""

    def __init__(self, make_runtime: Any, adapter: Any, max_steps: int):
        self.env, self.runtime, self.max_steps = adapter.make_env(), make_runtime(), max_steps

    def __call__(self, job: tuple[str, int, int]) -> Episode:
        kind, seed, index = job
        with torch.no_grad():
            return run_episode(self.env, self.runtime, seed, self.max_steps, index)


def run_in_workers(
    make_runtime: Any, adapter: Any, max_steps: int, jobs: list[tuple[str, int, int]], n_workers: int, bar: Any,
    stop_note: str = "the run's checkpoints are kept, the rollout's episodes are not", exec_config: Any = None,
) -> dict:  # fmt: skip
    """Episodes ``(kind, seed, index)`` over ``n_workers`` workers of ``exec.backend`` (spawned processes, or Ray actors).

    ``make_runtime`` (picklable, called once per worker) builds the worker's policy runtime: a
    checkpoint's policy from its weights, an exported policy from its directory, a client of a
    policy server. Each worker builds its env once. Returns ``{(kind, index): Episode}``; the
    per-seed results depend neither on ``n_workers`` nor on the backend (each episode seeds its
    env and its noise).
    """
    from polx.config import ExecConfig
    from polx.executor import executor

    make_worker = functools.partial(EpisodeWorker, make_runtime, adapter, max_steps)
    results = executor(exec_config or ExecConfig()).map(
        make_worker, jobs, n_workers=n_workers, on_result=lambda job, episode: bar.update(job[0], episode), stop_note=stop_note
    )
    return {(kind, index): episode for (kind, _, index), episode in zip(jobs, results)}


def policy_weights(policy: Policy) -> bytes:
    """The policy's state (normaliser included) as bytes on the CPU: what a worker rebuilds it from."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in policy.state_dict().items()}, buffer)
    return buffer.getvalue()


def runtime_factory(plugins: Any, config: Any, adapter: Any, policy: Policy) -> functools.partial:
    """A picklable ``make_runtime`` for ``run_in_workers``: ``policy`` rebuilt in a worker from its current weights."""
    return functools.partial(worker_runtime, plugin_recipe(plugins), config, adapter, policy_weights(policy))


def _run_in_workers(plugins, config, adapter, policy, jobs, bar) -> dict:
    make_runtime = runtime_factory(plugins, config, adapter, policy)
    return run_in_workers(make_runtime, adapter, config.eval.max_steps, jobs, config.eval.n_envs, bar, exec_config=config.exec)

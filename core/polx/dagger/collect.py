"""Labelled rollouts: an actor drives the env, the teacher labels every state it visits.

At each step the env's state is recorded first (the expert's ``record`` gives the dataset row),
then the teacher labels it (``polx.dagger.teacher``: the scripted expert, or a checkpoint that
predicts afresh from its own observation history), then the actor acts, and with probability
beta the teacher's label is executed instead. In a round the actor is the student; in Phase I it
is a teacher checkpoint (the final one or an intermediate one), with beta 0. Each episode seeds
the env, both policies' noise and the beta coin from its own seed, so the data do not depend on
how episodes are spread over ``eval.n_envs`` workers.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import attrs
import numpy as np
import torch
from tqdm import tqdm

from polx.dagger.teacher import Actor, PolicySpec, make_source_actor, make_teacher
from polx.eval.rollout import load_recipe, plugin_recipe, policy_weights, worker_runtime
from polx.policy.policy import Policy
from polx.policy.runtime import ChunkRuntime


@attrs.define(kw_only=True)
class LabelledEpisode:
    seed: int
    arrays: dict[str, np.ndarray]  # the ``record`` rows, ``action`` = the teacher's labels, ``teacher_<key>`` its observations
    disagreements: int  # steps where actor and teacher differ by more than dagger.disagreement
    teacher_steps: int  # steps on which the teacher's label was executed (the beta coin)
    label_seconds: float  # time the teacher spent labelling this episode
    max_reward: float
    success: bool
    rewards: np.ndarray  # (steps of the whole episode,) the reward after each step, also where ``arrays`` were trimmed
    source: int = 0  # which actor drove it (Phase I: 0 is the final teacher, then the intermediate checkpoints)

    @property
    def steps(self) -> int:
        return len(self.arrays["action"])


def collect_episode(
    env: Any, recorder: Any, teacher: Any, actor: Actor, seed: int, *, beta: float, max_steps: int, threshold: float, source: int = 0,
    trim: str = "none",
) -> LabelledEpisode:  # fmt: skip
    """One labelled rollout from ``env.reset(seed=seed)``; the env is left at its final state.

    ``trim="peak"`` keeps the steps up to the one whose reward first reaches the episode's
    maximum (the rest of an unroll that never succeeds is the actor hovering where it got to);
    ``max_reward`` and ``success`` still describe the whole episode."""
    obs, _ = env.reset(seed=seed)
    actor.reset(seed)
    teacher.reset(seed)
    coin = np.random.default_rng([seed, 0xDA66E4])
    labelling_before = teacher.seconds
    rows: dict[str, list] = {}
    disagreed, teacher_took = [], []
    rewards, success = [], False
    for _ in range(max_steps):
        for key, value in recorder.record(env).items():
            rows.setdefault(key, []).append(np.asarray(value))
        label, extras = teacher.label(env)
        for key, value in extras.items():
            rows.setdefault(key, []).append(value)
        rows.setdefault("action", []).append(label)
        actor_action = actor.act(env, obs)  # every step, so its observation history stays whole
        gap = actor.normalizer.normalize("action", torch.as_tensor(np.stack([actor_action, label]), dtype=torch.float32))
        disagreed.append(bool((gap[0] - gap[1]).abs().max() > threshold))
        take_teacher = coin.random() < beta
        teacher_took.append(take_teacher)
        obs, reward, terminated, truncated, info = env.step(label if take_teacher else actor_action)
        rewards.append(float(reward))
        success = success or bool(info.get("is_success", False))
        if terminated or truncated:
            break
    keep = len(rewards) if trim == "none" else int(np.argmax(rewards)) + 1
    arrays = {key: np.stack(values[:keep]) for key, values in rows.items()}
    label_seconds = (teacher.seconds - labelling_before) * keep / len(rewards)
    return LabelledEpisode(
        seed=seed, arrays=arrays, disagreements=sum(disagreed[:keep]), teacher_steps=sum(teacher_took[:keep]),
        label_seconds=label_seconds, max_reward=max(rewards), success=success, rewards=np.asarray(rewards, np.float32), source=source,
    )  # fmt: skip


def collect(
    plugins: Any, config: Any, adapter: Any, policy: Policy, seeds: list[int], *, beta: float, max_steps: int, threshold: float,
    progress: bool = True, teacher: PolicySpec | None = None,
) -> list[LabelledEpisode]:  # fmt: skip
    """The student ``policy``'s rollouts on ``seeds``, labelled by ``teacher`` (None: the env's expert), in seed order."""
    was_training = policy.training
    policy.eval()
    try:
        return _collect(plugins, config, adapter, [policy], [(0, seed) for seed in seeds], teacher,
                        dict(beta=beta, max_steps=max_steps, threshold=threshold), progress, "dagger rollout")  # fmt: skip
    finally:
        policy.train(was_training)


def collect_unrolls(
    plugins: Any, config: Any, adapter: Any, sources: list[PolicySpec], teacher: PolicySpec, seeds_per_source: list[list[int]], *,
    max_steps: int, threshold: float, progress: bool = True, trim: str = "none",
) -> list[LabelledEpisode]:  # fmt: skip
    """Phase I as in LucidSim: each source checkpoint drives its own episodes (chunked, on its own
    observations, beta 0) and the final ``teacher`` labels every step; in (source, seed) order.
    ``trim`` as in ``collect_episode`` (``dagger.unroll_trim``)."""
    jobs = [(i, seed) for i, seeds in enumerate(seeds_per_source) for seed in seeds]
    return _collect(plugins, config, adapter, sources, jobs, teacher, dict(beta=0.0, max_steps=max_steps, threshold=threshold, trim=trim), progress, "phase I unroll")


def _collect(plugins, config, adapter, actors: list, jobs: list[tuple[int, int]], teacher: PolicySpec | None, kwargs: dict, progress: bool, what: str) -> list[LabelledEpisode]:
    tty = sys.stderr.isatty()
    bar = tqdm(total=len(jobs), desc=what + "s", unit="episode", disable=not (progress and tty), file=sys.stderr, leave=False)
    count = 0

    def tick(job: tuple[int, int], episode: LabelledEpisode) -> None:  # a bar on a terminal, one line per episode in a log file
        nonlocal count
        count += 1
        bar.update()
        if progress and not tty:
            source = f"source {episode.source}, " if what.startswith("phase") else ""
            print(
                f"polx: {what} {count}/{len(jobs)}: {source}seed {episode.seed}, max reward {episode.max_reward:.3f}, "
                f"{episode.steps} steps, the teacher in control on {episode.teacher_steps}, "
                f"labelling {1000 * episode.label_seconds / max(1, episode.steps):.1f} ms/step",
                file=sys.stderr, flush=True,
            )  # fmt: skip

    recipe = plugin_recipe(plugins)
    specs = [a if isinstance(a, PolicySpec) else policy_weights(a) for a in actors]
    with bar:
        if config.exec.backend == "local" and (config.eval.n_envs == 1 or len(jobs) == 1):
            worker = LabellingWorker(recipe, config, adapter, specs, teacher, kwargs, plugins=plugins)
            try:
                done = []
                for job in jobs:
                    done.append(worker(job))
                    tick(job, done[-1])
                return done
            finally:
                worker.close()
        from polx.executor import executor

        make_worker = functools.partial(LabellingWorker, recipe, config, adapter, specs, teacher, kwargs)
        return executor(config.exec).map(
            make_worker, jobs, n_workers=config.eval.n_envs, on_result=tick,
            stop_note="the stages already finished are kept, these rollouts are not",
        )  # fmt: skip


class LabellingWorker:
    """A worker of ``polx.executor``: env, recorder and teacher built once, each actor on first use;
    then one labelled episode per job ``(actor index, seed)``. An actor is the student's weights
    (bytes, rebuilt with the run's config) or a ``PolicySpec`` (a Phase I source)."""

    def __init__(self, recipe: list, config: Any, adapter: Any, actors: list, teacher: PolicySpec | None, kwargs: dict, plugins: Any = None):
        if plugins is None:  # a spawned worker: one torch thread, the plugin set rebuilt
            torch.set_num_threads(1)
            plugins = load_recipe(recipe)
        self.plugins, self.recipe, self.config, self.adapter, self.specs, self.kwargs = plugins, recipe, config, adapter, actors, kwargs
        self.env = adapter.make_env()
        self.teacher = make_teacher(plugins, adapter, teacher)
        self.recorder = self.teacher.expert if teacher is None else adapter.make_expert()  # the expert's record(): the dataset row
        self.actors: dict[int, Actor] = {}

    def actor(self, index: int) -> Actor:
        if index not in self.actors:
            spec = self.specs[index]
            if isinstance(spec, PolicySpec):
                self.actors[index] = make_source_actor(self.plugins, self.adapter, spec)
            else:
                runtime: ChunkRuntime = worker_runtime(self.recipe, self.config, self.adapter, spec, plugins=self.plugins)
                self.actors[index] = Actor(runtime)
        return self.actors[index]

    def __call__(self, job: tuple[int, int]) -> LabelledEpisode:
        index, seed = job
        with torch.no_grad():
            return collect_episode(self.env, self.recorder, self.teacher, self.actor(index), seed, source=index, **self.kwargs)

    def close(self) -> None:
        self.env.close()

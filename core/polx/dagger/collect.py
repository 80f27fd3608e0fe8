"""Rollouts of the current policy with every visited state labelled by the env's expert.

At each step the expert is shown the state first (``record`` for the dataset row, ``act`` for
its label); then the policy acts, and with probability beta the expert's action is executed
instead. Each episode seeds the env, the policy's noise and the beta coin from its own seed,
so the data do not depend on how episodes are spread over ``eval.n_envs`` processes. Workers
are spawned and rebuild plugins, env, expert and policy as the evaluation rollouts' do.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import attrs
import numpy as np
import torch
from tqdm import tqdm

from polx.eval.rollout import plugin_recipe, policy_weights, worker_runtime
from polx.policy.policy import Policy
from polx.policy.runtime import ChunkRuntime


@attrs.define(kw_only=True)
class LabelledEpisode:
    seed: int
    arrays: dict[str, np.ndarray]  # the expert's ``record`` rows plus ``action`` = its labels
    disagreements: int  # steps where policy and expert differ by more than dagger.disagreement
    expert_steps: int  # steps on which the expert's action was executed (the beta coin)
    max_reward: float
    success: bool

    @property
    def steps(self) -> int:
        return len(self.arrays["action"])


def collect_episode(env: Any, expert: Any, runtime: ChunkRuntime, seed: int, *, beta: float, max_steps: int, threshold: float) -> LabelledEpisode:
    """One labelled rollout from ``env.reset(seed=seed)``; the env is left at its final state."""
    obs, _ = env.reset(seed=seed)
    runtime.reset(seed=seed)
    expert.reset()
    coin = np.random.default_rng([seed, 0xDA66E4])
    normalizer = runtime.policy.normalizer
    rows: dict[str, list] = {}
    disagreements = expert_steps = 0
    rewards, success = [0.0], False
    for _ in range(max_steps):
        for key, value in expert.record(env).items():
            rows.setdefault(key, []).append(np.asarray(value))
        label = np.asarray(expert.act(env), dtype=np.float32)
        rows.setdefault("action", []).append(label)
        policy_action = runtime.act(obs)  # every step, so its observation history stays whole
        gap = normalizer.normalize("action", torch.as_tensor(np.stack([policy_action, label]), dtype=torch.float32))
        disagreements += bool((gap[0] - gap[1]).abs().max() > threshold)
        take_expert = coin.random() < beta
        expert_steps += take_expert
        obs, reward, terminated, truncated, info = env.step(label if take_expert else policy_action)
        rewards.append(float(reward))
        success = success or bool(info.get("is_success", False))
        if terminated or truncated:
            break
    arrays = {key: np.stack(values) for key, values in rows.items()}
    return LabelledEpisode(
        seed=seed, arrays=arrays, disagreements=disagreements, expert_steps=expert_steps, max_reward=max(rewards), success=success
    )


def collect(plugins: Any, config: Any, adapter: Any, policy: Policy, seeds: list[int], *, beta: float, max_steps: int, threshold: float, progress: bool = True) -> list[LabelledEpisode]:
    """Labelled episodes for ``seeds``, in seed order, over ``config.eval.n_envs`` processes."""
    kwargs = dict(beta=beta, max_steps=max_steps, threshold=threshold)
    tty = sys.stderr.isatty()
    bar = tqdm(total=len(seeds), desc="dagger rollouts", unit="episode", disable=not (progress and tty), file=sys.stderr, leave=False)
    count = 0

    def tick(seed: int, episode: LabelledEpisode) -> None:  # a bar on a terminal, one line per episode in a log file
        nonlocal count
        count += 1
        bar.update()
        if progress and not tty:
            print(
                f"polx: dagger rollout {count}/{len(seeds)}: seed {seed}, max reward {episode.max_reward:.3f}, "
                f"{episode.steps} steps, the expert in control on {episode.expert_steps}",
                file=sys.stderr, flush=True,
            )  # fmt: skip

    was_training = policy.training
    policy.eval()
    try:
        with bar:
            if config.exec.backend == "local" and (config.eval.n_envs == 1 or len(seeds) == 1):
                env, expert = adapter.make_env(), adapter.make_expert()
                runtime = ChunkRuntime(policy, num_steps=config.eval.num_steps)
                try:
                    done = []
                    for seed in seeds:
                        done.append(collect_episode(env, expert, runtime, seed, **kwargs))
                        tick(seed, done[-1])
                    return done
                finally:
                    env.close()
            return _collect_in_workers(plugins, config, adapter, policy, seeds, kwargs, tick)
    finally:
        policy.train(was_training)


class LabellingWorker:
    """A worker of ``polx.executor``: env, expert and the policy built once, then one labelled episode per seed."""

    def __init__(self, recipe: list, config: Any, adapter: Any, weights: bytes, kwargs: dict):
        self.runtime = worker_runtime(recipe, config, adapter, weights)
        self.env, self.expert, self.kwargs = adapter.make_env(), adapter.make_expert(), kwargs

    def __call__(self, seed: int) -> LabelledEpisode:
        with torch.no_grad():
            return collect_episode(self.env, self.expert, self.runtime, seed, **self.kwargs)


def _collect_in_workers(plugins, config, adapter, policy, seeds, kwargs, tick) -> list[LabelledEpisode]:
    """Through ``exec.backend``'s workers; the round's store is written afterwards, here, by the caller alone."""
    from polx.executor import executor

    make_worker = functools.partial(LabellingWorker, plugin_recipe(plugins), config, adapter, policy_weights(policy), kwargs)
    return executor(config.exec).map(
        make_worker, seeds, n_workers=config.eval.n_envs, on_result=tick,
        stop_note="the rounds already finished are kept, this round's rollouts are not",
    )  # fmt: skip

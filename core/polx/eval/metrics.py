"""The numbers papers report, from a batch of rollouts (diffusion_policy's definitions).

An episode's score is its maximum reward; ``test_mean_score`` is the mean score over the test
episodes (seeds from ``eval.test_start_seed``), ``train_mean_score`` the same over the train
seeds. Success is ``info["is_success"]`` at any step, reported only when the env provides it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from polx.components import Episode


def episode_score(episode: Episode) -> float:
    return float(np.max(episode.rewards)) if len(episode.rewards) else 0.0


def episode_success(episode: Episode) -> bool | None:
    """True/False from ``info["is_success"]``, None when the env never reports it."""
    flags = [bool(info["is_success"]) for info in episode.infos if isinstance(info, dict) and "is_success" in info]
    return any(flags) if flags else None


def summarize(prefix: str, episodes: Sequence[Episode]) -> dict[str, float]:
    """``<prefix>_mean_score``, ``<prefix>_success_rate`` (when known), ``<prefix>/sim_max_reward_<seed>``."""
    if not episodes:
        return {}
    scores = [episode_score(e) for e in episodes]
    out = {f"{prefix}_mean_score": float(np.mean(scores))}
    successes = [episode_success(e) for e in episodes]
    if any(s is not None for s in successes):
        out[f"{prefix}_success_rate"] = float(np.mean([bool(s) for s in successes]))
    out[f"{prefix}_mean_steps"] = float(np.mean([len(e.rewards) for e in episodes]))
    for episode, score in zip(episodes, scores):
        out[f"{prefix}/sim_max_reward_{episode.seed}"] = score
    return out


_ROLLOUT_SUFFIXES = ("_mean_score", "_success_rate", "_mean_steps")


def is_rollout_metric(key: str) -> bool:
    """Whether ``key`` is one of ``summarize``'s outputs (not, say, ``train_action_mse_error``)."""
    prefix, sep, rest = key.partition("/")
    if sep:
        return prefix in ("test", "train") and rest.startswith("sim_max_reward_")
    return any(key in (f"test{s}", f"train{s}") for s in _ROLLOUT_SUFFIXES)

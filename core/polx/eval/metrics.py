"""The numbers papers report, from a batch of rollouts (diffusion_policy's definitions).

An episode's score is its maximum reward; ``test_mean_score`` is the mean score over the test
episodes (seeds from ``eval.test_start_seed``), ``train_mean_score`` the same over the train
seeds. Success is ``info["is_success"]`` at any step, reported only when the env provides it.

Staged tasks (RoboIMI's transfer: reach, grasp, lift, hand-over, hold) put ``info["stage"]``
(0 for none, k for the k-th stage) and ``info["stage_names"]`` in their step infos; each
rollout then also reports ``<prefix>_reached_<name>``, the share of episodes that got at least
that far, so partial progress shows before any episode succeeds.
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


def stage_names(episodes: Sequence[Episode]) -> tuple[str, ...]:
    """The env's stage names (stage k is ``names[k - 1]``), or () for an env without stages."""
    for episode in episodes:
        for info in episode.infos:
            if isinstance(info, dict) and info.get("stage_names"):
                return tuple(info["stage_names"])
    return ()


def furthest_stage(episode: Episode) -> int:
    """The highest ``info["stage"]`` of the episode (0: none reached)."""
    return max((int(info["stage"]) for info in episode.infos if isinstance(info, dict) and "stage" in info), default=0)


def stage_counts(episodes: Sequence[Episode]) -> dict[str, int]:
    """Episodes by the furthest stage they reached: ``{"none": n0, <stage 1>: n1, ...}``; sums to ``len(episodes)``."""
    names = stage_names(episodes)
    counts = dict.fromkeys(("none", *names), 0)
    labels = ("none", *names)
    for episode in episodes:
        counts[labels[min(furthest_stage(episode), len(names))]] += 1
    return counts


def episode_caption(episode: Episode) -> str:
    """``seed 100003  score 0.912  solved`` (``not solved`` / nothing when the env reports no
    success; ``reached lift`` for a staged env): the line stamped on a trajectory PNG."""
    text = f"seed {episode.seed}  score {episode_score(episode):.3f}"
    success = episode_success(episode)
    if success is not None:
        text += "  solved" if success else "  not solved"
    names = stage_names([episode])
    if names and not success:
        stage = min(furthest_stage(episode), len(names))
        text += f"  reached {names[stage - 1]}" if stage else "  reached no stage"
    return text


def summarize(prefix: str, episodes: Sequence[Episode]) -> dict[str, float]:
    """``<prefix>_mean_score``, ``<prefix>_success_rate`` (when known), ``<prefix>_reached_<stage>`` (staged
    envs), ``<prefix>/sim_max_reward_<seed>``."""
    if not episodes:
        return {}
    scores = [episode_score(e) for e in episodes]
    out = {f"{prefix}_mean_score": float(np.mean(scores))}
    successes = [episode_success(e) for e in episodes]
    if any(s is not None for s in successes):
        out[f"{prefix}_success_rate"] = float(np.mean([bool(s) for s in successes]))
    out[f"{prefix}_mean_steps"] = float(np.mean([len(e.rewards) for e in episodes]))
    names = stage_names(episodes)
    if names:
        furthest = np.array([furthest_stage(e) for e in episodes])
        for k, name in enumerate(names, start=1):
            out[f"{prefix}_reached_{name}"] = float(np.mean(furthest >= k))
    for episode, score in zip(episodes, scores):
        out[f"{prefix}/sim_max_reward_{episode.seed}"] = score
    return out


_ROLLOUT_SUFFIXES = ("_mean_score", "_success_rate", "_mean_steps")


def is_rollout_metric(key: str) -> bool:
    """Whether ``key`` is one of ``summarize``'s outputs (not, say, ``train_action_mse_error``)."""
    prefix, sep, rest = key.partition("/")
    if sep:
        return prefix in ("test", "train") and rest.startswith("sim_max_reward_")
    if any(key in (f"test{s}", f"train{s}") for s in _ROLLOUT_SUFFIXES):
        return True
    return key.startswith(("test_reached_", "train_reached_"))


def stage_line(metrics: dict, prefix: str = "test") -> str | None:
    """``reached: reach 0.96, grasp 0.90, ...`` from ``summarize``'s output, or None without stages."""
    start = f"{prefix}_reached_"
    parts = [f"{key[len(start):]} {value:.2f}" for key, value in metrics.items() if key.startswith(start)]
    return "reached: " + ", ".join(parts) if parts else None

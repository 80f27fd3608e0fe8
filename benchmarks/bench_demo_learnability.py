"""How well each PushT dataset's actions are determined by what the policy observes.

A behaviour-cloning policy maps an observation to an action. When demonstrations give very
different actions at nearly the same observation (an expert executing a plan the observation
does not show), no policy can fit them and learning is slow. Measured here for any datasets,
on the keypoint observation (9 block keypoints and the pusher, normalised to [-1, 1] per
dimension as the policy sees them):

* conditional spread: for each of ``--queries`` random steps, the mean distance (px) between
  its action and the actions of its ``--k`` nearest observations in *other* episodes; median
  over queries. Compared with the marginal spread (random pairs of steps), their ratio says how
  much of the action the observation explains (0: all of it, 1: none).
* action jumps: mean |a_t - a_{t-1}| within episodes and the share of steps above 30 px.
* lead: mean distance from the pusher to its commanded target.

    .venv/bin/python benchmarks/bench_demo_learnability.py DATASET [DATASET ...] [--queries 2000]

With no DATASET, compares the env's shipped default (human demonstrations) with
``env.default_data=expert``'s dataset (generated on first use, about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from polx.data.replay_buffer import ReplayBuffer
from polx.plugins import load_plugins


def adapter(**env):
    registry = load_plugins().registry
    component = registry.get("env", "pusht")
    return component.build(component.config_cls(obs_type="keypoints", **env))


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rb = ReplayBuffer.open(path)
    data = adapter().dataset_obs(rb.load(["keypoint", "state", "action"]))
    episode = np.repeat(np.arange(len(rb.episode_ends)), np.diff(rb.episode_ends, prepend=0))
    return data["keypoints"].astype(np.float64), data["action"].astype(np.float64), episode


def measure(path: Path, queries: int, k: int, seed: int) -> dict:
    obs, action, episode = load(path)
    lo, hi = obs.min(0), obs.max(0)
    x = torch.from_numpy(2 * (obs - lo) / np.maximum(hi - lo, 1e-9) - 1)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(obs), size=min(queries, len(obs)), replace=False)
    spreads, nn_dist = [], []
    for chunk in np.array_split(idx, max(1, len(idx) // 256)):
        d = torch.cdist(x[chunk], x)  # (q, N)
        d[torch.from_numpy(episode[chunk][:, None] == episode[None, :])] = float("inf")  # other episodes only
        dist, nearest = d.topk(k, dim=1, largest=False)
        a_q = action[chunk][:, None, :]
        a_n = action[nearest.numpy()]
        spreads.append(np.linalg.norm(a_n - a_q, axis=-1).mean(1))
        nn_dist.append(dist.mean(1).numpy())
    spread = np.concatenate(spreads)
    pairs = rng.integers(0, len(obs), size=(len(idx), 2))
    marginal = np.linalg.norm(action[pairs[:, 0]] - action[pairs[:, 1]], axis=-1)
    same_episode = episode[1:] == episode[:-1]
    jumps = np.linalg.norm(np.diff(action, axis=0), axis=-1)[same_episode]
    lead = np.linalg.norm(action - obs[:, 18:20], axis=-1)
    return {
        "dataset": str(path),
        "episodes": int(episode.max() + 1),
        "steps": int(len(obs)),
        "conditional_spread_px": float(np.median(spread)),
        "marginal_spread_px": float(np.median(marginal)),
        "spread_ratio": float(np.median(spread) / np.median(marginal)),
        "median_neighbour_obs_distance": float(np.median(np.concatenate(nn_dist))),
        "mean_action_jump_px": float(jumps.mean()),
        "share_jumps_over_30px": float((jumps > 30).mean()),
        "mean_lead_px": float(lead.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", type=Path)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    datasets = args.datasets or [adapter().default_dataset(), adapter(default_data="expert").default_dataset()]
    results = [measure(p, args.queries, args.k, args.seed) for p in datasets]
    for r in results:
        print(f"\n{r['dataset']}: {r['episodes']} episodes, {r['steps']} steps")
        print(f"  action spread among the {args.k} nearest observations (other episodes): {r['conditional_spread_px']:.1f} px")
        print(f"  action spread of random pairs: {r['marginal_spread_px']:.1f} px (ratio {r['spread_ratio']:.3f})")
        print(f"  mean action jump {r['mean_action_jump_px']:.1f} px/step, {r['share_jumps_over_30px']:.1%} of steps over 30 px")
        print(f"  mean distance pusher -> target {r['mean_lead_px']:.1f} px")
    print(json.dumps({"bench": "demo_learnability", "k": args.k, "queries": args.queries, "results": results}))


if __name__ == "__main__":
    main()

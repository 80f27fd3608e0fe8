"""The PushT expert as a teacher on states it did not lead to: its score when its targets are executed with noise.

A chunked policy's errors persist for a chunk, so each episode adds a Gaussian offset of
``--noise`` px per axis to the expert's targets, redrawn every 8 steps, and the expert is asked
again at every step, as ``polx dagger`` asks it along a policy's rollout. Two settings of when it
keeps its plan: ``replan`` (the plan is dropped whenever the state is 2 px / 0.04 rad from its
prediction: in effect a fresh plan at every noisy step) and ``keep`` (the defaults: the pusher
within 15 px, the block within 3 px / 0.05 rad). Seeds 300000 onwards, away from the test seeds.
Reports the mean max reward (test_mean_score's per-episode figure), successes, the share of label
changes over 30 px and seconds per episode. Readable lines, then one JSON line::

    python benchmarks/bench_expert_teacher.py [--episodes 10] [--noise 8 20]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from polx_envs.pusht.env import PushTEnv
from polx_envs.pusht.expert import PushTExpert

SETTINGS = {
    "replan": dict(keep_pusher_px=2.0, keep_block_px=2.0, keep_block_rad=0.04),
    "keep": dict(),  # the expert's defaults
}
FIRST_SEED, HOLD_STEPS, MAX_STEPS = 300_000, 8, 300


def noisy_episode(seed: int, noise: float, **expert_kwargs) -> tuple[float, bool, list[float]]:
    env = PushTEnv(obs_type="state")
    env.reset(seed=seed)
    expert, rng = PushTExpert(**expert_kwargs), np.random.default_rng(seed)
    best, labels, offset = 0.0, [], np.zeros(2)
    for step in range(MAX_STEPS):
        label = expert.act(env)
        labels.append(label)
        if step % HOLD_STEPS == 0:
            offset = rng.normal(0.0, noise, 2)
        _, reward, terminated, _, _ = env.step(np.clip(label + offset, 0.0, 512.0))
        best = max(best, float(reward))
        if terminated:
            return best, True, labels
    return best, False, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--noise", type=float, nargs="+", default=[8.0, 20.0], help="px of offset per axis (std)")
    args = parser.parse_args()
    results = []
    for noise in args.noise:
        for name, kwargs in SETTINGS.items():
            t0 = time.perf_counter()
            scores, successes, jumps = [], 0, []
            for seed in range(FIRST_SEED, FIRST_SEED + args.episodes):
                best, success, labels = noisy_episode(seed, noise, **kwargs)
                scores.append(best)
                successes += success
                jumps += list(np.linalg.norm(np.diff(np.asarray(labels), axis=0), axis=1))
            row = {
                "noise_px": noise, "setting": name, "episodes": args.episodes, "mean_max_reward": round(float(np.mean(scores)), 3),
                "successes": successes, "label_jumps_over_30px": round(float(np.mean(np.asarray(jumps) > 30)), 3),
                "seconds_per_episode": round((time.perf_counter() - t0) / args.episodes, 1),
            }  # fmt: skip
            results.append(row)
            print(f"noise {noise:4.0f} px  {name:6s}  score {row['mean_max_reward']:.3f}  success {successes}/{args.episodes}  "
                  f"label jumps >30 px {row['label_jumps_over_30px']:.3f}  {row['seconds_per_episode']:.1f} s/episode", flush=True)  # fmt: skip
    print(json.dumps({"benchmark": "bench_expert_teacher", "results": results}))


if __name__ == "__main__":
    main()

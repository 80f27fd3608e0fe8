"""What a checkpoint teaches under each ``dagger.label``: the teacher driving PushT on its own labels.

``polx dagger --teacher CKPT`` labels a visited step with the teacher's fresh prediction there.
``dagger.label=step`` keeps that prediction's action for the step, so a student imitates a policy
that predicts afresh and executes one action per step; ``dagger.label=chunk`` keeps the whole
predicted chunk, so a student imitates the teacher's plans, which it executes chunk by chunk as
the teacher is evaluated. This scores both behaviours of the same checkpoint on the same seeds:

- ``chunk``: the teacher as it is evaluated (``n_action_steps`` actions of each prediction);
- ``step``: the teacher acting on its per-step labels (a fresh prediction every step, its first
  action executed), which is the policy that ``dagger.label=step`` data describe.

Validation seeds (500000 on, away from the test seeds and the DAgger seeds), one torch thread.
Readable lines, then one JSON line::

    python benchmarks/bench_policy_teacher.py --teacher runs/<keypoints run> --episodes 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from polx.dagger import load_checkpoint_spec, make_source_actor, make_teacher
from polx.plugins import load_plugins
from polx.runs import build_env_adapter

FIRST_SEED = 500_000


def episode(env, act, reset, seed: int, max_steps: int) -> tuple[float, bool]:
    obs, _ = env.reset(seed=seed)
    reset(seed)
    best, success = 0.0, False
    for _ in range(max_steps):
        with torch.no_grad():
            obs, reward, terminated, truncated, info = env.step(act(env, obs))
        best, success = max(best, float(reward)), success or bool(info.get("is_success", False))
        if terminated or truncated:
            break
    return best, success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, required=True, help="a trained PushT polx checkpoint or run directory")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")))
    spec = load_checkpoint_spec(plugins, args.teacher, build_env_adapter(plugins, "pusht", []), "pusht")
    adapter = spec.adapter  # the teacher observes as it was trained to
    env = adapter.make_env()
    teacher, actor = make_teacher(plugins, adapter, spec), make_source_actor(plugins, adapter, spec)
    modes = {"chunk": (actor.act, actor.reset), "step": (lambda env, obs: teacher.label(env)[0], teacher.reset)}
    seeds = list(range(FIRST_SEED, FIRST_SEED + args.episodes))
    result = {"bench": "policy_teacher_labels", "teacher": str(args.teacher), "step": spec.step, "seeds": [seeds[0], seeds[-1]], "modes": {}}
    for mode, (act, reset) in modes.items():
        started = time.perf_counter()
        scores, successes = zip(*(episode(env, act, reset, seed, args.max_steps) for seed in seeds))
        row = {"mean_score": float(np.mean(scores)), "std": float(np.std(scores)), "success_rate": float(np.mean(successes)),
               "episodes": len(seeds), "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        result["modes"][mode] = row
        print(f"{mode:>5}: mean score {row['mean_score']:.3f} (std {row['std']:.3f}), success {row['success_rate']:.2f} "
              f"over {len(seeds)} seeds, {row['seconds']} s", file=sys.stderr, flush=True)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()

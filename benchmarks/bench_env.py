"""PushT: env speed, the scripted expert on the benchmark's test seeds, and fidelity to the original.

* env steps/s with image and with keypoint observations (random pusher targets, one process);
* the expert over seeds 100000..100049 (the benchmark's test start states, legacy placement):
  success rate (coverage > 0.95 within 300 steps), mean max coverage, steps, episodes/minute;
* render fidelity: every frame of the published dataset re-rendered from its ``data/state``,
  mean absolute pixel error against ``data/img`` (0..255 scale);
* replay: each episode's recorded actions replayed from its first state; block position error.

    .venv/bin/python benchmarks/bench_env.py [--dataset PATH] [--seeds 50] [--workers 2] [--frame-stride 1]

Prints readable lines, then one JSON object on its own line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np

from polx_envs.pusht.env import PushTEnv
from polx_envs.pusht.expert import run_episode

DEFAULT_DATASET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"


def env_speed(obs_type: str, steps: int) -> float:
    env = PushTEnv(obs_type=obs_type)
    env.reset(seed=0)
    targets = np.random.default_rng(0).uniform(50, 460, size=(steps, 2))
    t0 = time.perf_counter()
    for k, target in enumerate(targets):
        _, _, terminated, _, _ = env.step(target)
        if terminated or k % 300 == 299:
            env.reset(seed=k)
    return steps / (time.perf_counter() - t0)


def expert(n_seeds: int, workers: int) -> dict:
    seeds = range(100000, 100000 + n_seeds)
    t0 = time.perf_counter()
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(run_episode, seeds, chunksize=1)  # in seed order
    else:
        results = [run_episode(seed) for seed in seeds]
    minutes = (time.perf_counter() - t0) / 60
    return {
        "success_rate": float(np.mean([r["success"] for r in results])),
        "mean_max_coverage": float(np.mean([r["max_coverage"] for r in results])),
        "test_mean_score": float(np.mean([min(r["max_coverage"] / 0.95, 1.0) for r in results])),
        "mean_steps": float(np.mean([r["steps"] for r in results])),
        "episodes_per_minute": n_seeds / minutes,
        "workers": workers,
        "failed_seeds": [r["seed"] for r in results if not r["success"]],
    }


def fidelity(path: Path, stride: int) -> dict:
    from polx.data.replay_buffer import ReplayBuffer

    rb = ReplayBuffer.open(path)
    env = PushTEnv(obs_type="image")
    frame_err, final_err, max_err = [], [], []
    for ep in range(rb.n_episodes):
        data = rb.get_episode(ep, ["img", "state", "action"])
        for i in range(0, len(data["state"]), stride):
            obs = env.set_state(data["state"][i])
            frame_err.append(np.abs(np.moveaxis(obs["image"], 0, -1) * 255.0 - data["img"][i]).mean())
        replay = PushTEnv(obs_type="state")
        replay.set_state(data["state"][0])
        block = [replay.sim.state()[2:4]]
        for action in data["action"][:-1]:
            replay.step(action)
            block.append(replay.sim.state()[2:4])
        err = np.abs(np.array(block) - data["state"][:, 2:4]).max(1)
        final_err.append(err[-1])
        max_err.append(err.max())
    frame_err, final_err, max_err = np.array(frame_err), np.array(final_err), np.array(max_err)
    return {
        "frames": int(len(frame_err)),
        "mean_abs_pixel_error": float(frame_err.mean()),
        "max_frame_mean_abs_error": float(frame_err.max()),
        "exact_frames": float((frame_err == 0).mean()),
        "differing_frames": int((frame_err > 0).sum()),
        "episodes": int(rb.n_episodes),
        "replay_final_block_err_px": {
            "median": float(np.median(final_err)),
            "p99": float(np.percentile(final_err, 99)),
            "max": float(final_err.max()),
        },
        "replay_max_block_err_px": {"median": float(np.median(max_err)), "max": float(max_err.max())},
        "episodes_final_within_0.01px": float((final_err < 0.01).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000, help="env steps per speed measurement")
    parser.add_argument("--frame-stride", type=int, default=1, help="re-render every k-th dataset frame")
    args = parser.parse_args()
    out: dict = {}

    for obs_type in ("image", "keypoints"):
        out[f"env_steps_per_s_{obs_type}"] = env_speed(obs_type, args.steps)
        print(f"env steps/s ({obs_type} obs): {out[f'env_steps_per_s_{obs_type}']:.0f}")

    out["expert"] = e = expert(args.seeds, args.workers)
    print(
        f"expert over seeds 100000..{100000 + args.seeds - 1}: success {e['success_rate']:.0%}, "
        f"mean max coverage {e['mean_max_coverage']:.3f} (test_mean_score {e['test_mean_score']:.3f}), "
        f"{e['mean_steps']:.0f} steps/episode, {e['episodes_per_minute']:.1f} episodes/min with {args.workers} process(es); "
        f"unsolved: {e['failed_seeds']}"
    )

    if args.dataset.exists():
        out["fidelity"] = f = fidelity(args.dataset, args.frame_stride)
        print(
            f"render fidelity over {f['frames']} dataset frames: mean abs error {f['mean_abs_pixel_error']:.2e}/255 "
            f"(worst frame {f['max_frame_mean_abs_error']:.4f}/255); {f['differing_frames']} frame(s) not pixel-identical"
        )
        r = f["replay_final_block_err_px"]
        print(
            f"replay of {f['episodes']} episodes: final block position error median {r['median']:.2e} px, "
            f"p99 {r['p99']:.2e}, max {r['max']:.2e}; largest error anywhere {f['replay_max_block_err_px']['max']:.2e} px"
        )
    else:
        print(f"dataset not found at {args.dataset}: fidelity skipped")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

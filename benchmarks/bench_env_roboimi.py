"""RoboIMI env costs: steps/s with and without 3-camera rendering, render cost per frame (cheap vs
MuJoCo's default quality), trajectory PNG cost, and the scripted expert's success rate.

    .venv/bin/python benchmarks/bench_env_roboimi.py [--seeds 100] [--image-size 128] [--frames 30]

Prints readable lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from polx.components import Episode
from polx_envs.roboimi._gl import GL_BACKEND
from polx_envs.roboimi.config import RoboIMIConfig
from polx_envs.roboimi.env import RoboIMIEnv
from polx_envs.roboimi.expert import TransferExpert
from polx_envs.roboimi.render import render_trajectory


def expert_steps_per_second(config: RoboIMIConfig, render_images: bool, seeds: range) -> tuple[float, list]:
    """Control steps per second over expert episodes; also returns the last episode's actions."""
    env = RoboIMIEnv(config, render_images=render_images)
    env.reset(seed=seeds[0])
    env.step(TransferExpert().act(env))  # first render creates the GL context: not timed
    steps, elapsed, actions = 0, 0.0, []
    for seed in seeds:
        env.reset(seed=seed)
        expert = TransferExpert()
        actions = []
        started = time.perf_counter()
        for _ in range(config.max_steps):
            actions.append(expert.act(env))
            _, _, terminated, truncated, _ = env.step(actions[-1])
            if terminated or truncated:
                break
        elapsed += time.perf_counter() - started
        steps += len(actions)
    env.close()
    return steps / elapsed, actions


def frame_ms(config: RoboIMIConfig, frames: int) -> float:
    """Milliseconds to render one observation (all configured cameras)."""
    env = RoboIMIEnv(config)
    env.reset(seed=0)
    env.render_cameras()
    started = time.perf_counter()
    for _ in range(frames):
        env.render_cameras()
    env.close()
    return 1000 * (time.perf_counter() - started) / frames


def expert_success(seeds: range) -> tuple[float, float]:
    env = RoboIMIEnv(render_images=False)
    wins, lengths = 0, []
    for seed in seeds:
        env.reset(seed=seed)
        expert = TransferExpert()
        for t in range(env.config.max_steps):
            _, _, terminated, truncated, info = env.step(expert.act(env))
            if terminated or truncated:
                break
        wins += info["is_success"]
        lengths.append(t + 1)
    return wins / len(seeds), float(np.mean(lengths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="expert episodes for the success rate")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=30, help="frames timed per render setting")
    args = parser.parse_args()
    size = args.image_size
    cheap = RoboIMIConfig(image_size=size)
    default = RoboIMIConfig(image_size=size, cheap_render=False)
    print(f"RoboIMI env benchmark (GL backend {GL_BACKEND}, {size}px, cameras {', '.join(cheap.cameras)})")

    physics_sps, _ = expert_steps_per_second(cheap, False, range(3))
    print(f"steps/s, physics only (10 substeps of 2 ms per step): {physics_sps:8.1f}")
    render_sps, actions = expert_steps_per_second(cheap, True, range(1))
    print(f"steps/s, with 3-camera rendering (cheap):             {render_sps:8.1f}")
    cheap_ms = frame_ms(cheap, args.frames)
    print(f"3-camera frame, cheap (no shadows/reflections/MSAA):  {cheap_ms:8.2f} ms")
    default_ms = frame_ms(default, max(3, args.frames // 10))
    print(f"3-camera frame, MuJoCo default quality:                {default_ms:8.2f} ms  ({default_ms / cheap_ms:.1f}x)")

    env = RoboIMIEnv(cheap, render_images=False)
    env.reset(seed=0)
    for action in actions:
        env.step(action)
    with tempfile.TemporaryDirectory() as tmp:
        episode = Episode(seed=0, actions=np.array(actions), rewards=np.zeros(len(actions)))
        render_trajectory(env, episode, Path(tmp) / "warmup.png")
        started = time.perf_counter()
        render_trajectory(env, episode, Path(tmp) / "episode_0.png")
        png_ms = 1000 * (time.perf_counter() - started)
    print(f"trajectory PNG ({cheap.trajectory_image_size}px, {len(actions)} steps):           {png_ms:8.2f} ms")

    started = time.perf_counter()
    success, mean_len = expert_success(range(args.seeds))
    print(f"expert success over {args.seeds} seeds: {success:.1%} (mean episode {mean_len:.0f} steps, "
          f"{time.perf_counter() - started:.1f} s)")
    print(json.dumps({
        "gl_backend": GL_BACKEND,
        "image_size": size,
        "steps_per_s_physics": round(physics_sps, 1),
        "steps_per_s_render3": round(render_sps, 1),
        "frame_ms_cheap": round(cheap_ms, 2),
        "frame_ms_default": round(default_ms, 2),
        "trajectory_png_ms": round(png_ms, 2),
        "expert_success": success,
        "expert_seeds": args.seeds,
        "expert_mean_steps": round(mean_len, 1),
    }))


if __name__ == "__main__":
    main()

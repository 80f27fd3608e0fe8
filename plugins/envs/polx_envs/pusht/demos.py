"""Expert demonstrations in the layout of the published PushT dataset, generated in parallel.

Each episode is recorded as the original teleoperation script records it: at every step the
frame, state, keypoints and contact count *before* the action, and the action (the pusher target)
taken from there; the step that solves the task ends the episode without a row of its own.

``data/img`` (N, S, S, 3) float32 0..255, ``data/state`` (N, 5) float32 (angle in [0, 2 pi)),
``data/keypoint`` (N, 9, 2) float32, ``data/action`` (N, 2) float32, ``data/n_contacts`` (N, 1)
float32, ``meta/episode_ends`` (E,) int64.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from polx_envs.pusht import geometry, render
from polx_envs.pusht.env import PushTEnv
from polx_envs.pusht.expert import PushTExpert


def run_demo(seed: int, render_size: int = 96, legacy: bool = True, max_steps: int = 300, travel_speed: float = 30.0) -> dict:
    """One expert episode from the start state of ``seed``: its arrays and how it went."""
    env = PushTEnv(obs_type="state", render_size=render_size, legacy=legacy)
    env.reset(seed=seed)
    expert = PushTExpert(travel_speed=travel_speed)
    rows: dict[str, list] = {"img": [], "state": [], "keypoint": [], "action": [], "n_contacts": []}
    n_contacts, success, max_coverage = 0, False, 0.0
    for _ in range(max_steps):
        sim = env.sim
        # float32 before executing, so the stored actions replay to exactly these states
        action = expert.act(sim).astype(np.float32)
        rows["img"].append(render.render_frame(sim.agent_pos, sim.block_polygons(), sim.contact_markers(), render_size))
        rows["state"].append(sim.state())
        rows["keypoint"].append(geometry.keypoints(sim.block_pose))
        rows["action"].append(action)
        rows["n_contacts"].append([n_contacts])
        _, _, terminated, _, info = env.step(action)
        n_contacts, max_coverage = info["n_contacts"], max(max_coverage, info["coverage"])
        if terminated:
            success = True
            break
    data = {key: np.asarray(value, dtype=np.float32) for key, value in rows.items()}
    return {"seed": seed, "success": success, "max_coverage": max_coverage, "data": data}


def _demo_episode(seed: int, **kwargs) -> tuple[dict, bool, float]:
    """``run_demo`` as core's seed loop wants it: (arrays, success, max coverage)."""
    result = run_demo(seed, **kwargs)
    return result["data"], result["success"], result["max_coverage"]


def generate(
    out: Path,
    episodes: int,
    seed: int = 0,
    workers: int = 1,
    keep_all: bool = False,
    progress: bool = True,
    render_size: int = 96,
    legacy: bool = True,
    max_steps: int = 300,
    travel_speed: float = 30.0,
) -> dict:
    """Write ``episodes`` expert episodes (successful ones unless ``keep_all``) to a new store.

    Core's seed loop (``polx.data.cache.collect_demos``): seeds ``seed, seed + 1, ...`` are tried
    in order until enough episodes are kept (at most ``2 * episodes + 5`` tries), so the dataset is
    the same whatever ``workers`` is. The store appears at ``out`` only when complete.
    """
    from polx.data.cache import collect_demos

    coverages: list[float] = []
    summary = collect_demos(
        out, episodes, functools.partial(_demo_episode, render_size=render_size, legacy=legacy, max_steps=max_steps, travel_speed=travel_speed),
        env="pusht", seed=seed, workers=workers, keep_all=keep_all, progress=progress, max_attempts=2 * episodes + 5,
        on_result=lambda arrays, success, coverage: coverages.append(coverage),
    )  # fmt: skip
    return {**summary, "mean_max_coverage": float(np.mean(coverages))}

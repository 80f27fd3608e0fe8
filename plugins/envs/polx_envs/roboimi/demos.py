"""Expert demonstrations in the replay-buffer layout, and the cached default dataset.

One episode's arrays: ``r_vis``/``top``/``front`` uint8 (T, S, S, 3) (the configured cameras),
``qpos`` float32 (T, 14), ``action`` float32 (T, 16) and ``ee_pose`` float32 (T, 14): the
observation before each step, the expert's action at that step, and the EE poses it started from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from polx_envs.roboimi.config import RoboIMIConfig

#: bump when the scene or the expert changes what demonstrations contain (invalidates caches)
DATASET_VERSION = 2


def run_expert_episode(env, seed: int) -> tuple[dict[str, np.ndarray], bool]:
    """Roll the expert out from ``env.reset(seed=seed)``; returns (episode arrays, success)."""
    from polx_envs.roboimi.expert import TransferExpert

    obs, _ = env.reset(seed=seed)
    expert = TransferExpert()
    expert.reset()
    steps: dict[str, list] = {key: [] for key in (*env.config.cameras, "qpos", "action", "ee_pose")}
    info = {"is_success": False}
    for _ in range(env.config.max_steps):
        action = expert.act(env)
        for cam in env.config.cameras:
            steps[cam].append(obs["images"][cam])
        steps["qpos"].append(obs["qpos"])
        steps["ee_pose"].append(env.ee_pose())
        steps["action"].append(action)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    arrays = {key: np.stack(values) for key, values in steps.items()}
    for key in ("qpos", "action", "ee_pose"):
        arrays[key] = arrays[key].astype(np.float32)
    return arrays, bool(info["is_success"])


_worker_env = None  # one env per worker process


def _init_worker(config: RoboIMIConfig) -> None:
    global _worker_env
    from polx_envs.roboimi.env import RoboIMIEnv

    _worker_env = RoboIMIEnv(config)


def _close_worker() -> None:
    global _worker_env
    if _worker_env is not None:
        _worker_env.close()  # frees its GL context now rather than at garbage collection
        _worker_env = None


def _worker_episode(seed: int) -> tuple[dict[str, np.ndarray], bool]:
    return run_expert_episode(_worker_env, seed)


def generate_demos(
    config: RoboIMIConfig,
    out: Path,
    episodes: int,
    seed: int = 0,
    workers: int = 1,
    keep_all: bool = False,
    progress: bool = True,
) -> dict:
    """Write ``episodes`` expert episodes (successful ones unless ``keep_all``) from seeds ``seed``, ``seed+1``, ...

    Core's seed loop (``polx.data.cache.collect_demos``): atomic, in seed order whatever
    ``workers`` is, failing if the expert succeeds too rarely to reach ``episodes`` within
    ``2 * episodes + 10`` seeds.
    """
    from polx.data.cache import collect_demos

    summary = collect_demos(
        out, episodes, _worker_episode, env="roboimi", seed=seed, workers=workers, keep_all=keep_all, progress=progress,
        initializer=_init_worker, initargs=(config,), finalizer=_close_worker,
    )  # fmt: skip
    return {**summary, "image_size": config.image_size, "cameras": list(config.cameras)}


def default_dataset_path(config: RoboIMIConfig) -> Path:
    """Where the cached expert dataset for ``config`` lives; the name hashes every field but the
    drawing size and the training-time frame cache."""
    from polx.data.cache import cache_name, cache_root, data_fields

    readable = f"transfer_{config.image_size}px_{config.default_episodes}ep_seed{config.default_seed}"
    return cache_root() / "roboimi" / cache_name(readable, data_fields(config, exclude=("trajectory_image_size", "frame_cache_mb")), DATASET_VERSION)


def default_dataset(config: RoboIMIConfig, progress: bool = True) -> Path:
    """The cached expert dataset for ``config``, generated (with a notice and progress bar) on first use."""
    from polx.data.cache import cached_dataset

    workers = max(1, min(4, os.cpu_count() or 1))
    return cached_dataset(
        default_dataset_path(config),
        lambda: generate_demos(config, default_dataset_path(config), config.default_episodes, seed=config.default_seed, workers=workers, progress=progress),
        f"generating the RoboIMI expert dataset ({config.default_episodes} episodes, {config.image_size}px)",
    )

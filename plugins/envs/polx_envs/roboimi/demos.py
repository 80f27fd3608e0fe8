"""Expert demonstrations in the replay-buffer layout, and the cached default dataset.

One episode's arrays: ``r_vis``/``top``/``front`` uint8 (T, S, S, 3) (the configured cameras),
``qpos`` float32 (T, 14), ``action`` float32 (T, 16) and ``ee_pose`` float32 (T, 14): the
observation before each step, the expert's action at that step, and the EE poses it started from.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import attrs
import numpy as np

from polx.errors import DatasetError, PolxError
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

    Writing is atomic (``ReplayBuffer.writer``); episodes are written in seed order whatever
    ``workers`` is. Fails if the expert succeeds too rarely to reach ``episodes`` within
    ``2 * episodes + 10`` seeds.
    """
    from tqdm import tqdm

    from polx.data.replay_buffer import ReplayBuffer

    started = time.perf_counter()
    max_attempts = 2 * episodes + 10
    attempted = successes = written = steps = 0
    pool = None
    if workers > 1:  # spawn: GL contexts and fork do not mix; an executor fails, not hangs, if a worker dies
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(config,))
    else:
        _init_worker(config)
    bar = tqdm(total=episodes, desc="roboimi expert demos", unit="ep", disable=not progress, file=sys.stderr)
    try:
        with ReplayBuffer.writer(out) as rb:
            while written < episodes and attempted < max_attempts:
                batch = range(seed + attempted, seed + min(max_attempts, attempted + episodes - written))
                results = pool.map(_worker_episode, batch) if pool else map(_worker_episode, batch)
                for arrays, success in results:
                    attempted += 1
                    successes += success
                    if success or keep_all:
                        rb.add_episode(arrays)
                        written += 1
                        steps += len(arrays["action"])
                        bar.set_postfix(success=f"{successes}/{attempted}", refresh=False)
                        bar.update(1)
                    if written == episodes:
                        break
            if written < episodes:
                raise PolxError(
                    f"the RoboIMI expert succeeded on only {successes} of {attempted} seeds from {seed}; "
                    f"{episodes} successful episodes were asked for (nothing was written; --keep-all keeps failures)"
                )
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        else:
            _close_worker()
    return {
        "env": "roboimi",
        "out": str(out),
        "episodes": written,
        "steps": steps,
        "seeds_tried": attempted,
        "expert_success_rate": successes / attempted,
        "image_size": config.image_size,
        "cameras": list(config.cameras),
        "seconds": round(time.perf_counter() - started, 2),
    }


def cache_root() -> Path:
    """``$POLX_CACHE_DIR``, else the platform's user cache directory for polx."""
    import platformdirs

    return Path(os.environ.get("POLX_CACHE_DIR") or platformdirs.user_cache_dir("polx"))


def default_dataset_path(config: RoboIMIConfig) -> Path:
    """Where the cached expert dataset for ``config`` lives; the name changes with anything that shapes it."""
    fields = attrs.asdict(config, filter=lambda a, _: a.name != "trajectory_image_size")
    digest = hashlib.sha1(json.dumps([DATASET_VERSION, fields], sort_keys=True, default=list).encode()).hexdigest()[:10]
    name = f"transfer_{config.image_size}px_{config.default_episodes}ep_seed{config.default_seed}_{digest}.zarr"
    return cache_root() / "roboimi" / name


def default_dataset(config: RoboIMIConfig, progress: bool = True) -> Path:
    """The cached expert dataset for ``config``, generated (with a notice and progress bar) on first use."""
    path = default_dataset_path(config)
    if path.exists():
        return path
    workers = max(1, min(4, os.cpu_count() or 1))
    print(
        f"polx: generating the RoboIMI expert dataset ({config.default_episodes} episodes, "
        f"{config.image_size}px) at {path}; this happens once",
        file=sys.stderr,
    )
    try:
        generate_demos(
            config, path, config.default_episodes, seed=config.default_seed, workers=workers, progress=progress
        )
    except DatasetError:
        if not path.exists():  # another process finishing first is fine; anything else is not
            raise
    return path

"""Env plugins' dataset caching and demo generation, in one place so the envs cannot drift apart.

- ``cache_root()``: ``$POLX_CACHE_DIR``, else the platform's user cache directory for polx.
- ``cache_name(readable, fields, version)``: a file name whose hash covers every field given,
  so a setting that changes the data (``legacy``, a step limit, an image size...) can never
  reuse a dataset made with another value. Pass ``data_fields(config, exclude=...)`` to hash
  every field of an env config except those that only affect rollouts or drawing.
- ``cached_dataset(path, build, notice)``: the cached dataset, built on first use with a notice
  on stderr; a damaged cache fails loudly naming the path; two processes building the same
  dataset at once are fine (the writers are atomic; the loser keeps the winner's).
- ``collect_demos(...)``: the seed loop every expert generator needs: seeds ``seed, seed + 1,
  ...`` in order (so the data do not depend on ``workers``), failed episodes kept only with
  ``keep_all``, spawned worker processes, a progress bar, the store published atomically, and
  the one summary schema ``polx data generate`` prints (``SUMMARY_KEYS``). SIGTERM, like Ctrl-C,
  stops it cleanly: its workers are terminated and joined, and the unfinished store is removed.
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
from typing import Any, Callable, Iterable, Mapping

import attrs

from polx.errors import DatasetError, PolxError
from polx.workers import stopping_pool

#: every ``polx data generate`` summary has these keys (an env may add its own after them)
SUMMARY_KEYS = ("env", "out", "episodes", "steps", "seeds_tried", "success_rate", "seeds", "seconds")


def cache_root() -> Path:
    """``$POLX_CACHE_DIR``, else the platform's user cache directory for polx."""
    env = os.environ.get("POLX_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("polx"))


def data_fields(config: Any, exclude: Iterable[str] = ()) -> dict:
    """Every field of an attrs env config but ``exclude`` (those that do not change the data)."""
    skip = set(exclude)
    return attrs.asdict(config, filter=lambda a, _: a.name not in skip)


def cache_name(readable: str, fields: Mapping[str, Any], version: int, suffix: str = ".zarr") -> str:
    """``<readable>_<10 hex digits of sha256 over version and fields><suffix>``."""
    text = json.dumps({"v": version, **fields}, sort_keys=True, default=list)
    return f"{readable}_{hashlib.sha256(text.encode()).hexdigest()[:10]}{suffix}"


def cached_dataset(path: Path, build: Callable[[], Any], notice: str) -> Path:
    """``path`` if it holds a readable dataset, else ``build()`` it after printing ``notice`` to stderr."""
    from polx.data.replay_buffer import ReplayBuffer

    path = Path(path)
    if path.exists():
        ReplayBuffer.open(path)  # a damaged cache fails loudly, naming the path
        return path
    print(f"polx: {notice} at {path}; this happens once", file=sys.stderr)
    try:
        build()
    except DatasetError:
        if not path.exists():  # another process finishing the same dataset first is fine
            raise
    return path


def collect_demos(
    out: Path,
    episodes: int,
    run_episode: Callable[[int], tuple[dict, bool]],
    *,
    env: str,
    seed: int = 0,
    workers: int = 1,
    keep_all: bool = False,
    progress: bool = True,
    max_attempts: int | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    finalizer: Callable[[], None] | None = None,
    on_result: Callable[..., None] | None = None,
) -> dict:
    """Write ``episodes`` expert episodes to a new replay buffer at ``out``; the summary (``SUMMARY_KEYS``).

    ``run_episode(seed) -> (arrays, success, *extra)`` must be picklable when ``workers > 1`` (it runs in
    spawned processes, each set up by ``initializer(*initargs)``; in this process ``initializer``
    runs first and ``finalizer`` last). At most ``max_attempts`` seeds (default ``2 * episodes +
    10``) are tried; too few successes raise PolxError and nothing is written.
    ``on_result(arrays, success, *extra)`` sees every attempted episode (an env's own statistics).
    """
    from tqdm import tqdm

    from polx.data.replay_buffer import ReplayBuffer

    started = time.perf_counter()
    max_attempts = 2 * episodes + 10 if max_attempts is None else max_attempts
    attempted = successes = written = steps = 0
    pool = None
    if workers > 1:  # spawn: simulators, GL contexts and fork do not mix; a dead worker fails the executor, not hangs it
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer, initargs=initargs)
    elif initializer is not None:
        initializer(*initargs)
    bar = tqdm(total=episodes, desc=f"{env} expert demos", unit="ep", disable=not progress, file=sys.stderr)
    try:
        # a signal or an error: the unfinished store is removed, then no worker outlives this process
        with stopping_pool(pool, "nothing is kept", grace_s=10.0), ReplayBuffer.writer(out) as rb:
            while written < episodes and attempted < max_attempts:
                batch = range(seed + attempted, seed + min(max_attempts, attempted + episodes - written))
                for arrays, success, *extra in (pool.map(run_episode, batch) if pool else map(run_episode, batch)):
                    attempted += 1
                    successes += bool(success)
                    if on_result is not None:
                        on_result(arrays, bool(success), *extra)
                    if success or keep_all:
                        rb.add_episode(arrays)
                        written += 1
                        steps += len(arrays["action"])
                        bar.update(1)
                    bar.set_postfix(success=f"{successes}/{attempted}", refresh=False)
                    if written == episodes:
                        break
            if written < episodes:
                raise PolxError(
                    f"the {env} expert succeeded on only {successes} of {attempted} seeds from {seed}; {episodes} episodes "
                    "were asked for (nothing was written; --keep-all keeps unsuccessful episodes too)"
                )
    finally:
        bar.close()
        if pool is None and finalizer is not None:
            finalizer()
    return {
        "env": env, "out": str(out), "episodes": written, "steps": steps, "seeds_tried": attempted,
        "success_rate": successes / attempted, "seeds": [seed, seed + attempted - 1],
        "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip

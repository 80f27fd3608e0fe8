"""The published PushT human demonstrations, shipped with this plugin: PushT's default dataset.

Source: the human-teleoperated demonstrations of Diffusion Policy (Chi et al., 2023),
``pusht_cchi_v7_replay.zarr`` (206 episodes, 25,650 steps), released by its authors with the
MIT-licensed Diffusion Policy code (https://github.com/real-stanford/diffusion_policy). The
low-dimensional arrays (``state``, ``keypoint``, ``action``, ``n_contacts``,
``meta/episode_ends``) are packed unchanged into ``data/pusht_human_v7.npz`` by ``plugins/envs/scripts/pack_pusht_human_demos.py``.

On first use :func:`build` writes them as a replay buffer in the original layout and, when
images are asked for, fills in what is not shipped: ``img``, re-rendered from each state by the faithful renderer (pixel-identical to the source on 25,649 of 25,650 frames; see
``benchmarks/bench_env.py``). Images are stored as uint8 (the source's float 0..255 values are
whole numbers, so nothing is lost).

Why these and not the scripted expert's demos: at equal config and budget a policy learns
several times better from them (``benchmarks/README.md``, "Learning"; what differs between
the two datasets, as measured, is in ``plugins/envs/README.md``).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import sys
from pathlib import Path

import numpy as np

ARRAYS_PATH = Path(__file__).parent / "data" / "pusht_human_v7.npz"
#: sha256 of the shipped file, checked on load so a damaged install fails loudly
ARRAYS_SHA256 = "23a442eff1d4ca81502968631c7f6eb28b42a439b6fb2e4031a50cd65c66f1d1"
N_EPISODES, N_STEPS = 206, 25650


def load_arrays() -> dict[str, np.ndarray]:
    """The shipped arrays: ``state`` (N, 5), ``keypoint`` (N, 9, 2), ``action`` (N, 2), ``n_contacts`` (N, 1), ``episode_ends`` (E,)."""
    from polx.errors import DatasetError

    if not ARRAYS_PATH.is_file():
        raise DatasetError(f"the PushT human demonstrations are missing from this install ({ARRAYS_PATH}); reinstall polx-plugin-envs")
    if ARRAYS_SHA256 is not None:
        digest = hashlib.sha256(ARRAYS_PATH.read_bytes()).hexdigest()
        if digest != ARRAYS_SHA256:
            raise DatasetError(f"{ARRAYS_PATH} is damaged (sha256 {digest}, expected {ARRAYS_SHA256}); reinstall polx-plugin-envs")
    with np.load(ARRAYS_PATH) as npz:
        return {key: npz[key] for key in ("state", "keypoint", "action", "n_contacts", "episode_ends")}


def render_states(states: np.ndarray, render_size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 frames of the env placed at each state."""
    from polx_envs.pusht.env import PushTEnv

    env = PushTEnv(obs_type="state", render_size=render_size)
    frames = np.empty((len(states), render_size, render_size, 3), dtype=np.uint8)
    for i, state in enumerate(states):
        env.set_state(state)
        frames[i] = env.render()
    return frames


def _render_chunk(args: tuple[np.ndarray, int]) -> np.ndarray:
    return render_states(*args)


def build(out: Path, *, images: bool, render_size: int = 96, workers: int = 1, progress: bool = True) -> dict:
    """Write the demonstrations to a new replay buffer at ``out`` (atomic); returns a summary."""
    from tqdm import tqdm

    from polx.data.replay_buffer import ReplayBuffer

    arrays = load_arrays()
    state, ends = arrays["state"], arrays["episode_ends"]
    columns = {
        "state": state,
        "keypoint": arrays["keypoint"],
        "action": arrays["action"],
        "n_contacts": arrays["n_contacts"],
    }
    if images:
        chunks = np.array_split(state, max(1, 8 * workers))
        bar = tqdm(total=len(state), desc="PushT human demos: rendering", unit="frame", disable=not progress, file=sys.stderr)
        frames = []
        with bar:
            if workers > 1:
                from concurrent.futures import ProcessPoolExecutor

                from polx.workers import stopping_pool

                pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                with stopping_pool(pool, "nothing is kept (the next use renders again)"):  # SIGTERM leaves no renderer running
                    for chunk, done in zip(pool.map(_render_chunk, [(c, render_size) for c in chunks]), chunks):
                        frames.append(chunk)
                        bar.update(len(done))
            else:
                for c in chunks:
                    frames.append(render_states(c, render_size))
                    bar.update(len(c))
        columns["img"] = np.concatenate(frames)
    starts = np.concatenate([[0], ends[:-1]])
    with ReplayBuffer.writer(out) as rb:
        for s, e in zip(starts, ends):
            rb.add_episode({key: value[s:e] for key, value in columns.items()})
    return {"path": str(out), "episodes": int(len(ends)), "steps": int(len(state)), "images": images, "source": "pusht_cchi_v7 (human)"}

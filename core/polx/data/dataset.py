"""The training dataset: in-memory arrays -> policy batches of observation and action windows.

Each item is one window of ``horizon`` steps (see ``SequenceSampler``), padded with
``pad_before = n_obs_steps - 1`` and ``pad_after = n_action_steps - 1``. Observations use only the
window's first ``n_obs_steps`` frames, so only those image frames are gathered and converted
(images dominate the cost). ``get_batch`` assembles a whole batch with one fancy-indexing gather
per key; ``__getitem__`` builds one item by slicing, for ``torch.utils.data.DataLoader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from polx.data.formats import CachedFrames, load_arrays, open_dataset
from polx.data.normalizer import Normalizer
from polx.data.sampler import SequenceSampler
from polx.errors import DatasetError


#: a store's optional per-step target chunks, ``(N, horizon, A)`` (``PolicyDataset(action_chunks=...)``)
CHUNK_KEY = "action_chunk"


class _MissingArray(KeyError):
    """The adapter asked for an array the dataset does not have."""


class _LoadOnAccess(Mapping[str, np.ndarray]):
    """A reader's arrays, each read whole on first access: keys an adapter ignores (an unused
    camera, say) are never read."""

    def __init__(self, reader: Any):
        self._reader, self._loaded = reader, {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._reader.keys():
            raise _MissingArray(key)
        if key not in self._loaded:
            self._loaded[key] = load_arrays(self._reader, [key])[key]
        return self._loaded[key]

    def __contains__(self, key: object) -> bool:  # without reading the array
        return key in self._reader.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._reader.keys())

    def __len__(self) -> int:
        return len(self._reader.keys())

    def frames(self, key: str, max_bytes: int, transform: Any = None, step_shape: tuple | None = None, dtype: Any = None) -> CachedFrames:
        """``key`` read lazily through a bounded block cache (``CachedFrames``), never whole: for
        adapters whose camera arrays pass through unchanged (or per-block ``transform``-ed into
        frames of ``step_shape`` and ``dtype``)."""
        if key not in self._reader.keys():
            raise _MissingArray(key)
        return CachedFrames(self._reader, key, max_bytes, transform=transform, step_shape=step_shape, dtype=dtype)


def load_policy_arrays(
    path: str | Path, adapter: Any, *, registry: Any, fmt: str | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Open the dataset at ``path`` (any format of ``registry``, see ``open_dataset``), load the arrays
    ``adapter.dataset_obs`` reads, convert.

    Returns ``({obs_key: (N, ...), "action": (N, A)}, episode_ends)``; DatasetError names the path
    when the adapter's output misses a key of its ``shape_meta`` or has the wrong length.
    """
    reader = open_dataset(path, fmt, registry=registry)
    n_steps = int(reader.episode_ends[-1])
    where = f"dataset {str(path)!r} (converted by env {getattr(adapter, 'name', type(adapter).__name__)!r})"
    try:
        arrays = adapter.dataset_obs(_LoadOnAccess(reader))
    except _MissingArray as exc:
        have = ", ".join(reader.keys())
        raise DatasetError(f"{where}: the env needs the array {exc.args[0]!r}, which is missing; it has: {have}") from None
    except DatasetError as exc:  # the adapter's own check: add which dataset it was
        raise DatasetError(f"{where}: {exc}") from None
    missing = sorted({*adapter.shape_meta["obs"], "action"} - set(arrays))
    if missing:
        raise DatasetError(f"{where} lacks {', '.join(missing)}; it provides {', '.join(sorted(arrays))}")
    for key, arr in arrays.items():
        if len(arr) != n_steps:
            raise DatasetError(f"{where}: {key} has {len(arr)} steps; expected {n_steps} (episode_ends[-1])")
    check_policy_arrays(where, arrays, adapter.shape_meta, reader.episode_ends)
    return arrays, reader.episode_ends


def load_action_chunks(path: str | Path, *, registry: Any, fmt: str | None = None) -> np.ndarray | None:
    """The store's per-step target chunks (``CHUNK_KEY``, ``(N, horizon, A)``), or None when it has none."""
    reader = open_dataset(path, fmt, registry=registry)
    if CHUNK_KEY not in reader.keys():
        return None
    chunks = np.asarray(load_arrays(reader, [CHUNK_KEY])[CHUNK_KEY], dtype=np.float32)
    if chunks.ndim != 3 or len(chunks) != int(reader.episode_ends[-1]):
        raise DatasetError(f"dataset {str(path)!r}: {CHUNK_KEY} has shape {chunks.shape}; expected (steps, horizon, action dims)")
    if not np.isfinite(chunks).all():
        raise DatasetError(f"dataset {str(path)!r}: {CHUNK_KEY} holds NaN or inf")
    return chunks


def chunks_from_actions(action: np.ndarray, episode_ends: np.ndarray, *, horizon: int, n_obs_steps: int) -> np.ndarray:
    """Each step's own future as a target chunk ``(N, horizon, A)``: at step t, the actions of steps
    ``t - (n_obs_steps - 1)`` onwards, clamped to t's episode as the sampler pads. A demonstration
    then carries ``CHUNK_KEY`` like a DAgger teacher's labels, and each window's target is the one
    ``PolicyDataset`` cuts from its actions (``tests/test_data_dataset.py``)."""
    # one window per step: it starts n_obs_steps - 1 before the step and may run past its episode's end
    sampler = SequenceSampler(episode_ends, horizon, pad_before=n_obs_steps - 1, pad_after=horizon - n_obs_steps)
    steps, _ = sampler.indices(np.arange(len(sampler)))  # (N, horizon), clamped to each episode
    return np.asarray(action)[steps].astype(np.float32)


def expected_step_shape(meta: Mapping[str, Any]) -> tuple[int, ...]:
    """One step's array shape for a ``shape_meta`` entry: rgb ``[C, H, W]`` is stored ``(H, W, C)``."""
    shape = tuple(int(d) for d in meta["shape"])
    return (*shape[1:], shape[0]) if meta.get("type") == "rgb" and len(shape) == 3 else shape


#: a low-dim value this large is a corrupt file, not a measurement; its square overflows float32 in the loss
IMPLAUSIBLE = 1e30


def check_policy_arrays(where: str, arrays: Mapping[str, np.ndarray], shape_meta: Mapping, episode_ends: np.ndarray) -> None:
    """DatasetError when an array's per-step shape differs from the env's ``shape_meta`` or a value is NaN/inf/>=1e30.

    Both would otherwise surface later and worse: a shape as a matrix error at step 1, an inf as
    a normalizer of scale 0 and a policy that outputs inf.
    """
    metas = {**shape_meta["obs"], "action": shape_meta["action"]}
    for key, meta in metas.items():
        arr, expected = arrays[key], expected_step_shape(meta)
        if tuple(arr.shape[1:]) != expected:
            raise DatasetError(
                f"{where}: {key} has per-step shape {tuple(arr.shape[1:])} (array {tuple(arr.shape)}); "
                f"the env expects {expected}{' (H, W, C)' if meta.get('type') == 'rgb' else ''}"
            )
        if np.asarray(arr).dtype.kind != "f":
            continue  # integers (camera images) cannot hold NaN/inf
        with np.errstate(invalid="ignore"):
            finite = (np.abs(np.asarray(arr)) < IMPLAUSIBLE).reshape(len(arr), -1).all(axis=1)  # False for NaN too
        if not finite.all():
            step = int(np.argmin(finite))
            episode = int(np.searchsorted(episode_ends, step, side="right"))
            raise DatasetError(
                f"{where}: {key} has non-finite values (NaN/inf, or |x| >= {IMPLAUSIBLE:g}, which no robot records) at "
                f"{int((~finite).sum())} steps, the first at step {step} (episode {episode}); remove or repair those episodes"
            )


def _obs_tensor(x: np.ndarray, rgb: bool) -> torch.Tensor:
    """``(..., H, W, C)`` uint8 -> ``(..., C, H, W)`` uint8 for rgb; float32 otherwise.

    Frames stay uint8 (a quarter of float32's bytes through the loader's workers and to the
    device): the encoder crops, scales and normalises them once per batch on the device.
    """
    if rgb:
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3)))
    return torch.from_numpy(x)


class PolicyDataset(torch.utils.data.Dataset):
    """Windows over the episodes selected by ``episode_mask`` (all by default).

    ``arrays``: ``{"action": (N, A), <obs key>: (N, D) or, for ``rgb_keys``, (N, H, W, C) uint8}``
    as returned by an env adapter's ``dataset_obs``; held in memory, not copied when already
    float32 / uint8.

    ``action_chunks`` ``(N, horizon, A)``, optional: a whole target chunk per step (``CHUNK_KEY`` in
    a store, e.g. a DAgger teacher's prediction at each visited state). There is then one window per
    step t: its ``n_obs_steps`` observations ending at t (padded at the episode's start) and the
    target ``action_chunks[t]``, aligned as the policy predicts (entry ``n_obs_steps - 1`` is step
    t's action), none of it padding; so an episode shorter than a horizon still trains.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        episode_ends: np.ndarray,
        *,
        horizon: int,
        n_obs_steps: int,
        n_action_steps: int,
        episode_mask: np.ndarray | None = None,
        rgb_keys: Iterable[str] = (),
        action_chunks: np.ndarray | None = None,
    ):
        episode_ends = np.asarray(episode_ends, dtype=np.int64)
        rgb_keys = tuple(rgb_keys)
        if "action" not in arrays:
            raise ValueError(f"arrays need an 'action' key; got {sorted(arrays)}")
        for name, steps in (("n_obs_steps", n_obs_steps), ("n_action_steps", n_action_steps)):
            if not 1 <= steps <= horizon:
                raise ValueError(f"{name} must be in [1, horizon = {horizon}], got {steps}")
        n_steps = int(episode_ends[-1]) if len(episode_ends) else 0
        for key, arr in arrays.items():
            if len(arr) != n_steps:
                raise ValueError(f"{key} has {len(arr)} steps; expected {n_steps} (episode_ends[-1])")
        for key in rgb_keys:
            arr = arrays.get(key)
            if arr is None or arr.ndim != 4 or arr.dtype != np.uint8:
                got = "missing" if arr is None else f"{arr.dtype} {arr.shape}"
                raise ValueError(f"rgb key {key!r} must be a uint8 (N, H, W, C) array; got {got}")

        if action_chunks is not None:
            want = (n_steps, horizon, np.shape(arrays["action"])[-1])
            if np.shape(action_chunks) != want:
                raise ValueError(f"{CHUNK_KEY} has shape {np.shape(action_chunks)}; expected {want} (steps, horizon, action dims)")
        self.action_chunks = None if action_chunks is None else np.asarray(action_chunks, dtype=np.float32)
        self.horizon, self.n_obs_steps, self.n_action_steps = horizon, n_obs_steps, n_action_steps
        self.rgb_keys = rgb_keys
        self.episode_ends = episode_ends
        self.episode_mask = np.ones(len(episode_ends), bool) if episode_mask is None else np.asarray(episode_mask, bool)
        self.action = np.asarray(arrays["action"], dtype=np.float32)  # (N, A)
        self.obs = {  # key -> (N, D) float32, or (N, H, W, C) uint8 for rgb keys
            key: arr if key in rgb_keys else np.asarray(arr, dtype=np.float32)
            for key, arr in arrays.items()
            if key != "action"
        }
        if self.action_chunks is None:  # windows of horizon steps; observations are their first n_obs_steps
            self.sampler = SequenceSampler(episode_ends, horizon, pad_before=n_obs_steps - 1, pad_after=n_action_steps - 1, episode_mask=self.episode_mask)
        else:  # one window per step: the observations that end there
            self.sampler = SequenceSampler(episode_ends, n_obs_steps, pad_before=n_obs_steps - 1, episode_mask=self.episode_mask)

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, i: int) -> dict:
        obs, _ = self.sampler.sample_sequence(self.obs, i, n_steps=self.n_obs_steps)
        if self.action_chunks is None:
            action, is_pad = self.sampler.sample_sequence({"action": self.action}, i)
        else:
            newest = int(self.sampler.starts[i]) + self.n_obs_steps - 1
            action, is_pad = {"action": self.action_chunks[newest]}, np.zeros(self.horizon, dtype=bool)
        return {
            "obs": {key: _obs_tensor(x, key in self.rgb_keys) for key, x in obs.items()},  # (To, ...)
            "action": torch.from_numpy(action["action"]),  # (horizon, A)
            "action_is_pad": torch.from_numpy(is_pad),  # (horizon,)
        }

    def get_batch(self, idxs: Iterable[int]) -> dict:
        """Items ``idxs`` stacked, with a leading batch dimension B = len(idxs)."""
        steps, is_pad = self.sampler.indices(np.asarray(idxs, dtype=np.int64))  # (B, horizon) each, or (B, To) with chunks
        obs_steps = steps[:, : self.n_obs_steps]  # (B, To)
        if self.action_chunks is not None:  # the chunk stored at each window's newest observation
            action, is_pad = self.action_chunks[obs_steps[:, -1]], np.zeros((len(steps), self.horizon), dtype=bool)
        else:
            action = self.action[steps]
        return {
            "obs": {key: _obs_tensor(arr[obs_steps], key in self.rgb_keys) for key, arr in self.obs.items()},
            "action": torch.from_numpy(action),  # (B, horizon, A)
            "action_is_pad": torch.from_numpy(is_pad),  # (B, horizon)
        }

    def fit_normalizer(self, mode: str = "limits") -> Normalizer:
        """A normalizer fitted on this dataset's episodes only (action and low-dim obs; rgb keys pass through)."""
        in_episodes = np.repeat(self.episode_mask, np.diff(self.episode_ends, prepend=0))  # (N,) bool
        low_dim = {key: arr[in_episodes] for key, arr in self.obs.items() if key not in self.rgb_keys}
        action = self.action[in_episodes]
        if self.action_chunks is not None:  # the targets are the chunks: their limits must be covered too
            action = np.concatenate([action, self.action_chunks[in_episodes].reshape(-1, action.shape[-1])])
        return Normalizer.fit({"action": action, **low_dim}, mode=mode, identity_keys=self.rgb_keys)

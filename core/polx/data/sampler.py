"""Fixed-length windows over episodes, padded at the episode edges by repeating the edge frame.

A window of ``sequence_length`` steps may start up to ``pad_before`` steps before its episode's
first step and end up to ``pad_after`` steps after its last; the missing steps repeat the first
(or last) frame and are marked in ``is_pad``. With the policy's choice ``pad_before =
n_obs_steps - 1`` and ``pad_after = n_action_steps - 1`` every episode step is seen as the
"current" observation and every action chunk has at least one real action (diffusion_policy's
scheme). Windows never cross an episode boundary.
"""

from __future__ import annotations

import numpy as np


def episode_split(
    n_episodes: int, val_ratio: float, seed: int, max_train_episodes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, val) episode masks, disjoint, drawn under ``seed``.

    At least one validation episode when ``val_ratio > 0`` and there are two or more episodes
    (and always at least one training episode); ``max_train_episodes`` then keeps a random subset
    of the training episodes (to study data scaling).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    if max_train_episodes is not None and max_train_episodes < 1:
        raise ValueError(f"max_train_episodes must be >= 1 or None, got {max_train_episodes}")
    # Each draw uses a fresh generator seeded with ``seed``, in the same way as diffusion_policy,
    # so the same seed picks the same episodes there and here.
    val = np.zeros(n_episodes, dtype=bool)
    if val_ratio > 0 and n_episodes > 1:
        n_val = min(max(1, round(n_episodes * val_ratio)), n_episodes - 1)
        val[np.random.default_rng(seed).choice(n_episodes, size=n_val, replace=False)] = True
    train = ~val
    if max_train_episodes is not None and train.sum() > max_train_episodes:
        candidates = np.flatnonzero(train)
        keep = candidates[np.random.default_rng(seed).choice(len(candidates), size=max_train_episodes, replace=False)]
        train = np.zeros(n_episodes, dtype=bool)
        train[keep] = True
    return train, val


class SequenceSampler:
    """All windows of ``sequence_length`` steps over the selected episodes.

    Window ``i`` is described by three step indices into the flat arrays: ``start`` (may lie
    before its episode, by up to ``pad_before``) and its episode's ``[lo, hi)`` range.
    """

    def __init__(
        self,
        episode_ends: np.ndarray,
        sequence_length: int,
        pad_before: int = 0,
        pad_after: int = 0,
        episode_mask: np.ndarray | None = None,
    ):
        episode_ends = np.asarray(episode_ends, dtype=np.int64)
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        # More padding than sequence_length - 1 would allow windows with no real step at all.
        for name, pad in (("pad_before", pad_before), ("pad_after", pad_after)):
            if not 0 <= pad <= sequence_length - 1:
                raise ValueError(f"{name} must be in [0, sequence_length - 1 = {sequence_length - 1}], got {pad}")
        if episode_mask is None:
            episode_mask = np.ones(len(episode_ends), dtype=bool)
        episode_mask = np.asarray(episode_mask, dtype=bool)
        if episode_mask.shape != episode_ends.shape:
            raise ValueError(f"episode_mask has shape {episode_mask.shape}; expected {episode_ends.shape}")
        self.sequence_length = sequence_length
        self.pad_before, self.pad_after = pad_before, pad_after

        starts, los, his = [], [], []
        for lo, hi in zip(np.concatenate([[0], episode_ends[:-1]])[episode_mask], episode_ends[episode_mask]):
            # window starts from lo - pad_before to hi - sequence_length + pad_after, inclusive
            first, last = lo - pad_before, hi - sequence_length + pad_after
            if last >= first:
                starts.append(np.arange(first, last + 1, dtype=np.int64))
                los.append(np.full(last - first + 1, lo, dtype=np.int64))
                his.append(np.full(last - first + 1, hi, dtype=np.int64))
        empty = [np.zeros(0, dtype=np.int64)]
        self.starts = np.concatenate(starts or empty)  # (W,) first step of each window (may precede lo)
        self.episode_lo = np.concatenate(los or empty)  # (W,) its episode's first step
        self.episode_hi = np.concatenate(his or empty)  # (W,) its episode's exclusive end

    def __len__(self) -> int:
        return len(self.starts)

    def indices(self, idxs: np.ndarray, n_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Flat step indices ``(B, n_steps)`` of windows ``idxs`` and their ``is_pad`` mask.

        ``n_steps`` (default ``sequence_length``) takes only the leading steps of each window,
        e.g. the observation steps. Padded steps point at the episode's edge frame.
        """
        idxs = np.asarray(idxs, dtype=np.int64)
        steps = np.arange(self._n_steps(n_steps), dtype=np.int64)
        raw = self.starts[idxs, None] + steps  # (B, n_steps)
        lo, hi = self.episode_lo[idxs, None], self.episode_hi[idxs, None]
        return np.clip(raw, lo, hi - 1), (raw < lo) | (raw >= hi)

    def sample_sequence(
        self, data: dict[str, np.ndarray], idx: int, n_steps: int | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Window ``idx`` of every array: ``{key: (n_steps, ...)}`` and ``is_pad`` ``(n_steps,)``.

        Slices the real steps and repeats the edge frames (the per-item path; ``indices`` is the
        vectorised one, and the two must agree).
        """
        n = self._n_steps(n_steps)
        if not -len(self) <= idx < len(self):
            raise IndexError(f"window {idx} out of range for {len(self)} windows")
        start, lo, hi = int(self.starts[idx]), int(self.episode_lo[idx]), int(self.episode_hi[idx])
        real_lo = max(start, lo)
        real_hi = max(min(start + n, hi), real_lo)  # the real steps are [real_lo, real_hi), maybe none
        n_before = min(real_lo - start, n)
        n_after = n - n_before - (real_hi - real_lo)  # > 0 only if there is a real step to repeat
        windows = {}
        for key, arr in data.items():
            parts = [np.repeat(arr[real_lo : real_lo + 1], n_before, 0), arr[real_lo:real_hi]]
            if n_after:
                parts.append(np.repeat(arr[real_hi - 1 : real_hi], n_after, 0))
            windows[key] = np.concatenate(parts)
        is_pad = np.zeros(n, dtype=bool)
        is_pad[:n_before] = True
        is_pad[n - n_after :] = True
        return windows, is_pad

    def _n_steps(self, n_steps: int | None) -> int:
        if n_steps is None:
            return self.sequence_length
        if not 1 <= n_steps <= self.sequence_length:
            raise ValueError(f"n_steps must be in [1, sequence_length = {self.sequence_length}], got {n_steps}")
        return n_steps

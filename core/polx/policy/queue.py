"""The chunk queue every runtime shares, in numpy only (no torch): one policy call per action chunk.

It keeps the last ``n_obs_steps`` observations; when its action queue is empty it asks
``predict(history)`` for the ``n_action_steps`` actions that start at the step of the newest
observation and queues them. After ``reset()`` the history is padded by repeating the first
observation, as the training windows are padded at episode starts. ``ChunkRuntime`` (torch, the
evaluator's) and the exported policies' runtimes (torch and onnxruntime) are this queue.
"""

from __future__ import annotations

from collections import deque
from typing import Mapping

import numpy as np


class ChunkQueue:
    """``act(obs) -> action`` with unbatched numpy observations and actions; subclasses define ``_predict_chunk``."""

    def __init__(self, n_obs_steps: int):
        self.n_obs_steps = n_obs_steps
        self.obs_history: deque[Mapping[str, np.ndarray]] = deque(maxlen=n_obs_steps)
        self.actions: deque[np.ndarray] = deque()
        self.n_chunks = 0  # policy calls since construction

    def reset(self, seed: int | None = None) -> None:
        """Forget the episode; ``seed`` makes the sampling noise of the next episode reproducible."""
        self.obs_history.clear()
        self.actions.clear()
        if seed is not None:
            self._seed(seed)

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        if not self.obs_history:
            self.obs_history.extend([obs] * self.n_obs_steps)
        else:
            self.obs_history.append(obs)
        if not self.actions:
            self.actions.extend(self._predict_chunk(list(self.obs_history)))
            self.n_chunks += 1
        return self.actions.popleft()

    def _seed(self, seed: int) -> None:
        raise NotImplementedError

    def _predict_chunk(self, history: list[Mapping[str, np.ndarray]]) -> np.ndarray:
        """``n_obs_steps`` observations, oldest first -> (n_action_steps, A)."""
        raise NotImplementedError

"""Chunked execution: one policy call per action chunk, not per env step.

The runtime keeps the last ``n_obs_steps`` observations; when its action queue is empty it asks
the policy for a ``horizon``-long chunk and queues the ``n_action_steps`` actions that start at
index ``n_obs_steps - 1`` (the step of the newest observation). After ``reset()`` the history is
padded by repeating the first observation, as the training windows are padded at episode starts.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from polx.policy.policy import Policy


class ChunkRuntime:
    """Drives one env: ``act(obs) -> action`` with unbatched numpy observations and actions."""

    def __init__(self, policy: Policy, num_steps: int | None = None):
        self.policy = policy
        self.num_steps = num_steps
        self.obs_history: deque[dict[str, np.ndarray]] = deque(maxlen=policy.n_obs_steps)
        self.actions: deque[np.ndarray] = deque()
        self.generator = torch.Generator(device=policy.device)
        self.n_chunks = 0  # policy calls since construction

    def reset(self, seed: int | None = None) -> None:
        """Forget the episode; ``seed`` makes the sampling noise of the next episode reproducible."""
        self.obs_history.clear()
        self.actions.clear()
        if seed is not None:
            self.generator.manual_seed(seed)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if not self.obs_history:
            self.obs_history.extend([obs] * self.policy.n_obs_steps)
        else:
            self.obs_history.append(obs)
        if not self.actions:
            self.actions.extend(self._predict_chunk())
        return self.actions.popleft()

    def _predict_chunk(self) -> np.ndarray:
        history = list(self.obs_history)
        batch = {key: torch.as_tensor(np.stack([o[key] for o in history]), dtype=torch.float32)[None] for key in history[0]}  # (1, To, ...)
        out = self.policy.predict_action(batch, num_steps=self.num_steps, generator=self.generator)
        self.n_chunks += 1
        return out["action"][0].float().cpu().numpy()  # (n_action_steps, A)

"""Chunked execution of a torch ``Policy``: the chunk queue (``polx.policy.queue``) over ``predict_action``.

One policy call per action chunk, not per env step: the runtime keeps the last ``n_obs_steps``
observations and, when its action queue is empty, samples a ``horizon``-long chunk and queues the
``n_action_steps`` actions that start at index ``n_obs_steps - 1`` (the step of the newest
observation). After ``reset()`` the history is padded by repeating the first observation, as the
training windows are padded at episode starts.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from polx.policy.policy import Policy
from polx.policy.queue import ChunkQueue


class ChunkRuntime(ChunkQueue):
    """Drives one env: ``act(obs) -> action`` with unbatched numpy observations and actions."""

    def __init__(self, policy: Policy, num_steps: int | None = None):
        super().__init__(policy.n_obs_steps)
        self.policy = policy
        self.num_steps = num_steps
        self.generator = torch.Generator(device=policy.device)

    def _seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def _predict(self, history: list[Mapping[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """``predict_action`` on the history as a batch of one."""
        batch = {key: torch.as_tensor(np.stack([o[key] for o in history]), dtype=torch.float32)[None] for key in history[0]}  # (1, To, ...)
        return self.policy.predict_action(batch, num_steps=self.num_steps, generator=self.generator)

    def _predict_chunk(self, history: list[Mapping[str, np.ndarray]]) -> np.ndarray:
        return self._predict(history)["action"][0].float().cpu().numpy()  # (n_action_steps, A)

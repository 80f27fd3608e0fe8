"""The ``zarr`` dataset format: Diffusion Policy's replay-buffer layout, zarr format 2 or 3 stores.

A thin reader over ``ReplayBuffer`` (which does the validation: layout, lengths, missing chunks).
"""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

import attrs
import numpy as np

if TYPE_CHECKING:  # pragma: no cover - zarr loads when a store is opened, not at registration
    from polx.data.replay_buffer import ReplayBuffer

HELP = "Diffusion Policy zarr replay buffer (data/<key>, meta/episode_ends; zarr format 2 or 3)"


@attrs.define(frozen=True, kw_only=True)
class ZarrFormatConfig:
    """No options: the layout says everything."""


class ZarrReader:
    """``DatasetReader`` over a replay buffer opened read-only."""

    format = "zarr"

    def __init__(self, rb: "ReplayBuffer"):
        self.rb, self.path, self.episode_ends = rb, rb.path, rb.episode_ends

    def keys(self) -> list[str]:
        return self.rb.keys()

    def array_info(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        shape, dtype, _ = self.rb.array_info(key)
        return shape, dtype

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        return self.rb.read(key, start, stop)

    def chunk_steps(self, key: str) -> int:
        """Steps per stored chunk of ``key`` (``CachedFrames`` reads whole chunks)."""
        return int(self.rb.array_info(key)[2][0])

    def source(self, key: str) -> str:
        return f"data/{key}"


class ZarrFormat:
    name = "zarr"

    def __init__(self, config: ZarrFormatConfig | None = None):
        self.config = config

    def detect(self, path: Path) -> bool:
        """A zarr group's metadata file, or a ``.zarr`` name (so a damaged store gets zarr's own error)."""
        path = Path(path)
        return path.suffix == ".zarr" or (path.is_dir() and ((path / ".zgroup").is_file() or (path / "zarr.json").is_file()))

    def open(self, path: Path) -> ZarrReader:
        from polx.data.replay_buffer import ReplayBuffer

        return ZarrReader(ReplayBuffer.open(path))

    def write(self, out: Path, episodes) -> int:
        """Episodes as a new replay buffer at ``out`` (atomic: ``ReplayBuffer.writer``); returns the count."""
        from polx.data.replay_buffer import ReplayBuffer

        with ReplayBuffer.writer(out) as rb:
            for episode in episodes:
                rb.add_episode(episode)
            return rb.n_episodes

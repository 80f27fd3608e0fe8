"""Training data: the replay buffer split by episode into train/val windows, and the batch loader.

Batches are gathered by ``PolicyDataset.get_batch`` (one vectorised gather per key) rather than
item by item: the loader's sampler yields whole index batches. Each epoch's order comes from
``DistributedSampler`` (seeded by ``train.seed`` and the epoch), so it is the same after a resume
and each rank sees a disjoint share; a resumed run skips the batches it already trained on.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any, Iterator

import attrs
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from polx.data.dataset import PolicyDataset, load_action_chunks, load_policy_arrays
from polx.data.normalizer import Normalizer
from polx.data.sampler import episode_split
from polx.errors import DatasetError
from polx.policy.encoder import obs_keys


@attrs.define(kw_only=True)
class TrainingData:
    path: Path
    train: PolicyDataset
    val: PolicyDataset | None  # None when the split leaves no validation episode
    normalizer: Normalizer  # fitted on the training episodes only
    n_train_episodes: int
    n_val_episodes: int


def load_training_data(path: Path, adapter: Any, config: Any, registry: Any) -> TrainingData:
    """Open (in format ``data.format``, or detected) and split the dataset at ``path`` for ``config``
    (a ``RunConfig``); DatasetError names the path. ``registry`` holds the dataset formats."""
    arrays, episode_ends = load_policy_arrays(path, adapter, fmt=config.data.format, registry=registry)
    train_mask, val_mask = episode_split(
        len(episode_ends), config.data.val_ratio, config.data.split_seed, config.data.max_train_episodes
    )
    kwargs = dict(
        horizon=config.policy.horizon,
        n_obs_steps=config.policy.n_obs_steps,
        n_action_steps=config.policy.n_action_steps,
        rgb_keys=obs_keys(adapter.shape_meta)[0],
        action_chunks=load_action_chunks(path, fmt=config.data.format, registry=registry),  # a store of target chunks (DAgger's dagger.label=chunk)
    )
    try:
        train = PolicyDataset(arrays, episode_ends, episode_mask=train_mask, **kwargs)
        val = PolicyDataset(arrays, episode_ends, episode_mask=val_mask, **kwargs) if val_mask.any() else None
    except ValueError as exc:
        raise DatasetError(f"dataset {str(path)!r}: {exc}") from None
    return TrainingData(
        path=Path(path),
        train=train,
        val=val,
        normalizer=train.fit_normalizer(config.data.normalizer),
        n_train_episodes=int(train_mask.sum()),
        n_val_episodes=int(val_mask.sum()),
    )


class _Batches(Dataset):
    """Indexed by a list of window indices; returns the whole batch."""

    def __init__(self, dataset: PolicyDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idxs: list[int]) -> dict:
        return self.dataset.get_batch(idxs)


class EpochBatches(Sampler):
    """This rank's index batches of one epoch; ``set_epoch(epoch, skip)`` picks the epoch and drops its first ``skip`` batches."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.windows = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        # a dataset smaller than one batch still trains, on one partial batch per epoch
        self.batches = BatchSampler(self.windows, batch_size, drop_last=len(self.windows) >= batch_size)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.windows.set_epoch(epoch)
        self.skip = skip

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batches), self.skip, None)


def _seed_worker(worker_id: int) -> None:
    """Loader workers get distinct, reproducible numpy/python seeds from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: PolicyDataset, batches: EpochBatches, *, num_workers: int, seed: int, pin_memory: bool) -> DataLoader:
    return DataLoader(
        _Batches(dataset),
        sampler=batches,
        batch_size=None,  # the sampler yields whole batches
        num_workers=num_workers,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,  # batches are drawn here, so set_epoch still reaches the sampler
    )


def fixed_batches(dataset: PolicyDataset, batch_size: int, n_batches: int, seed: int) -> list[list[int]]:
    """The same validation windows every time: ``n_batches`` batches of a seeded permutation."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    return [order[i : i + batch_size].tolist() for i in range(0, min(len(order), n_batches * batch_size), batch_size)]

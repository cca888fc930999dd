"""Samplers whose output depends only on (seed, epoch, rank): runs repeat and resume exactly.

The training sampler yields ``(epoch, index)`` keys, so the dataset seeds each sample's
augmentation from ``(seed, epoch, index)`` alone: the same numbers whatever the number of
workers, the process that loads it, or whether the run was interrupted and resumed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """Shuffle ``length`` indices with a generator seeded from ``(seed, epoch)``; shard for DDP.

    Every rank gets the same number of samples (``length // num_replicas``; the few left over
    are dropped that epoch, a different few each epoch), so DDP processes stay in step.
    Lightning calls :meth:`set_epoch` at the start of every epoch.
    """

    def __init__(self, length: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas}).")
        self.length = length
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.skip: tuple[int, int] = (-1, 0)  # (epoch, samples already trained on)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_within(self, epoch: int, samples_done: int) -> None:
        """Leave out the first ``samples_done`` samples of ``epoch``: they were trained on
        before the run stopped mid-epoch. ``len()`` stays the full epoch's, as the training
        loop's restored batch counter expects."""
        self.skip = (epoch, samples_done)

    def __len__(self) -> int:
        return self.length // self.num_replicas

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1))
        order = torch.randperm(self.length, generator=generator)[: len(self) * self.num_replicas]
        mine = order[self.rank :: self.num_replicas].tolist()
        if self.skip[0] == self.epoch:
            mine = mine[self.skip[1] :]
        for index in mine:
            yield self.epoch, index


class EvalDistributedSampler(Sampler[int]):
    """Shard an evaluation split over processes WITHOUT padding: rank r gets r, r + n, ...

    torch's ``DistributedSampler`` repeats samples so every rank gets as many; then a split of
    odd size would count some images twice and the metrics would differ from one process's.
    """

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        self.indices = list(range(rank, length, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixed from the three numbers (splitmix64-style), stable across platforms."""
    value = 0
    for part in (seed, epoch, index):
        value = (value ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF

"""The training DataLoader: its workers draw the epoch's first samples when the epoch's first
batch is asked for, not when ``iter()`` is called.

A DataLoader with workers takes ``prefetch_factor x num_workers`` sample keys from its sampler
the moment ``iter()`` is called. Lightning calls ``iter()`` on the training loader in
``FitLoop.setup_data`` and only then ``set_epoch`` (``on_advance_start``); on a fresh epoch
the order does not matter (the iterator is made again after ``set_epoch``), but on a resume the
first epoch's iterator is the one made before: the workers would replay epoch 0's order and
crops (the sampler's keys ``(epoch, index)`` seed the augmentation). Starting the workers at the
first ``next()`` serves the epoch Lightning restored, as the loader without workers (whose
sampler runs lazily in this process) always did. Persistent workers are kept between epochs as
before: only the moment the sampler is read changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader


class EpochStartLoader(DataLoader):
    """A DataLoader whose iterator starts (reads its sampler, wakes its workers) at the first batch."""

    def __iter__(self) -> Iterator[Any]:
        return _StartAtFirstBatch(self)


class _StartAtFirstBatch:
    def __init__(self, loader: EpochStartLoader) -> None:
        self.loader = loader
        self.iterator: Iterator[Any] | None = None

    def __iter__(self) -> _StartAtFirstBatch:
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = DataLoader.__iter__(self.loader)
        return next(self.iterator)

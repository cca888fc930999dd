"""The CUB-layout LightningDataModule: real CUB-200-2011 and the embedded synthetic dataset.

``data=cub`` points ``root`` at an extracted ``CUB_200_2011``; ``data=synthetic`` sets
``synthetic`` to a generator spec, writes the dataset once in the CUB layout under ``root``
and then reads it through exactly the same code.

Splits: train and test from ``train_test_split.txt``; validation is a seeded, per-class
``val_fraction`` of train, held out from training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from camexp.data.cub import CUBRecords, DatasetError, read_cub, resolve_cub_root, split_train_val
from camexp.data.dataset import WSOLDataset, collate
from camexp.data.samplers import EpochShuffleSampler, EvalDistributedSampler
from camexp.data.transforms import EvalTransform, TrainTransform


class CUBDataModule(L.LightningDataModule):
    """Serves CUB-layout data; every batch is a dict (see :func:`camexp.data.dataset.collate`)."""

    def __init__(
        self,
        root: str,
        num_classes: int,
        synthetic: dict[str, Any] | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        resize_size: tuple[int, int] = (256, 256),
        crop_size: int = 224,
        eval_size: tuple[int, int] = (224, 224),
        load_masks: bool = False,
        epochs: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must be in (0, 1).")
        self.root = root
        self.num_classes = num_classes
        self.synthetic = dict(synthetic) if synthetic else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.train_transform = TrainTransform(tuple(resize_size), crop_size)
        self.eval_transform = EvalTransform(tuple(eval_size))
        self.load_masks = load_masks
        self.epochs = epochs  # the dataset's usual schedule length; trainer.max_epochs reads it
        self.seed = seed  # training order and augmentation: a function of (seed, epoch, index)
        self.records: CUBRecords | None = None
        self.datasets: dict[str, WSOLDataset] = {}

    # -- where the data is --------------------------------------------------------------

    def dataset_root(self) -> Path:
        """The CUB_200_2011 folder; for synthetic data, writes it first if it is not there."""
        if self.synthetic is not None:
            from camexp.data.synthetic import SyntheticSpec, ensure_synthetic_cub

            spec = SyntheticSpec(**self.synthetic)
            if spec.num_classes != self.num_classes:
                raise ValueError(
                    f"data.synthetic.num_classes={spec.num_classes} differs from "
                    f"data.num_classes={self.num_classes}; set them equal."
                )
            return ensure_synthetic_cub(Path(self.root), spec)
        return resolve_cub_root(self.root)

    def check(self) -> None:
        """Fast checks before any model is built: the layout is there (raises DatasetError)."""
        if self.synthetic is None:
            resolve_cub_root(self.root)

    def prepare_data(self) -> None:
        self.dataset_root()

    def setup(self, stage: str | None = None) -> None:
        if self.records is None:
            self.records = read_cub(self.dataset_root())
            if len(self.records.class_names) != self.num_classes:
                raise DatasetError(
                    f"{self.records.root / 'classes.txt'} lists {len(self.records.class_names)} "
                    f"classes but data.num_classes={self.num_classes}. Set "
                    f"data.num_classes={len(self.records.class_names)}."
                )
        records = self.records
        train_rows, val_rows = split_train_val(
            records.labels, np.flatnonzero(records.is_train), self.val_fraction, self.split_seed
        )
        test_rows = np.flatnonzero(~records.is_train)
        self.datasets = {
            "train": self._dataset(train_rows, self.train_transform, seed=self.seed),
            "val": self._dataset(val_rows, self.eval_transform),
            "test": self._dataset(test_rows, self.eval_transform),
        }

    def _dataset(self, rows: np.ndarray, transform, seed: int = 0) -> WSOLDataset:
        records = self.records
        assert records is not None
        masks = None
        if self.load_masks:
            if not records.has_masks:
                raise DatasetError(
                    f"data.load_masks=true but {records.root / 'segmentations'} does not exist. "
                    "Extract CUB's segmentations there, or set data.load_masks=false."
                )
            masks = [records.mask_file(row) for row in rows]
        return WSOLDataset(
            image_files=[records.image_file(row) for row in rows],
            image_ids=[records.paths[row] for row in rows],
            labels=records.labels[rows],
            boxes=[records.boxes[row] for row in rows],
            transform=transform,
            mask_files=masks,
            seed=seed,
        )

    @property
    def class_names(self) -> list[str]:
        """Readable class names: CUB's ``001.Black_footed_Albatross`` -> ``Black footed Albatross``."""
        if self.records is None:
            return [str(i) for i in range(self.num_classes)]
        return [name.split(".", 1)[-1].replace("_", " ") for name in self.records.class_names]

    # -- loaders ------------------------------------------------------------------------

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.datasets[split]
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        if train:
            sampler = EpochShuffleSampler(len(dataset), self.seed, replicas, rank)
        else:
            sampler = EvalDistributedSampler(len(dataset), replicas, rank)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

"""The DataModule every dataset shares: :class:`WSOLDataModule`.

A dataset's reader (CUB's text files, ILSVRC's folders and XML/CSV boxes, the field's metadata
folders) fills :class:`~camexp.data.tables.Tables` once; :class:`WSOLDataModule` then does the
rest the same way for every dataset: fast checks (:mod:`camexp.data.checks`), the
``data.on_bad_image`` policy, :class:`~camexp.data.dataset.WSOLDataset` and the loaders.
Subclasses (:mod:`camexp.data.datamodule` for CUB, :mod:`camexp.data.imagenet`,
:mod:`camexp.data.openimages`) implement :meth:`WSOLDataModule.read_tables`.
"""

from __future__ import annotations

import logging
import os

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from camexp.core.errors import DatasetError
from camexp.core.messages import say
from camexp.core.values import check_positive
from camexp.data.dataset import WSOLDataset, collate
from camexp.data.device_decode import DECODE_DEVICES, decode_batch, device_decoder_problem
from camexp.data.images import quiet_decoder_notice
from camexp.data.loaders import EpochStartLoader
from camexp.data.metadata import rows_per_class
from camexp.data.samplers import EpochShuffleSampler, EvalDistributedSampler
from camexp.data.tables import Split, Tables, split_train_val
from camexp.data.transforms import EvalTransform, TrainTransform

log = logging.getLogger(__name__)


# -- tables ----------------------------------------------------------------------------------


# -- the field's metadata folders (data.split=wsol) ------------------------------------------


# -- the base DataModule ----------------------------------------------------------------------


BAD_IMAGE_POLICIES = ("error", "skip")


def auto_workers(devices: int) -> int:
    """Loader processes per device: the CPUs this process may use, shared by the devices."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus // max(1, devices)))


TRAIN_ON = ("train", "val")


class WSOLDataModule(L.LightningDataModule):
    """Serves any dataset a source reads into :class:`Tables`; batches are dicts
    (:func:`camexp.data.dataset.collate`). Subclasses implement :meth:`read_tables`.

    ``split="official"`` splits the dataset's own train part into train and a seeded per-class
    ``val_fraction`` (validation); ``split="wsol"`` reads the field's metadata folders.
    """

    dataset_name = "dataset"
    splits_supported: tuple[str, ...] = ("official", "wsol")

    def __init__(
        self,
        root: str,
        num_classes: int,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = 4,
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
        split: str = "official",
        metadata_root: str | None = None,
        on_bad_image: str = "error",
        check_sample: int = 8,
        train_on: str = "train",
        holdout_fraction: float = 0.2,
        check_eval_splits: bool = True,
        val_per_class: int | None = None,
        decode_device: str = "cpu",
    ) -> None:
        super().__init__()
        if decode_device not in DECODE_DEVICES:
            raise DatasetError(
                f"data.decode_device={decode_device!r} is not allowed; use 'cpu' (decode JPEGs in "
                "the DataLoader workers, the default) or 'cuda' (decode them on the GPU)."
            )
        self.decode_device = decode_device
        self.decode_on_device = False  # decided in setup, once the run's device is known
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must be in (0, 1).")
        if split not in self.splits_supported:
            raise DatasetError(
                f"data.split={split!r} is not available for {self.dataset_name}; use one of "
                f"{list(self.splits_supported)}."
            )
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise DatasetError(
                f"data.on_bad_image={on_bad_image!r} is not allowed; use 'error' (stop before "
                "training with the list) or 'skip' (leave those images out, logged once each)."
            )
        if train_on not in TRAIN_ON:
            raise DatasetError(
                f"data.train_on={train_on!r} is not allowed; use 'train' (the weakly-labelled "
                "training split) or 'val' (the fully-annotated val split, for method=fsl)."
            )
        if not 0.0 < holdout_fraction < 1.0:
            raise DatasetError(f"data.holdout_fraction={holdout_fraction} must be in (0, 1).")
        self.train_on = train_on
        self.holdout_fraction = holdout_fraction
        self.root = root
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.train_transform = TrainTransform(tuple(resize_size), crop_size)
        self.eval_transform = EvalTransform(tuple(eval_size))
        self.load_masks = load_masks
        self.epochs = epochs  # the dataset's usual schedule length; trainer.max_epochs reads it
        self.seed = seed  # training order and augmentation: a function of (seed, epoch, index)
        self.split = split
        self.metadata_root = metadata_root
        self.on_bad_image = on_bad_image
        self.check_sample = check_sample
        # decode every val and test image before training: a bad one found after the whole
        # training would cost the run (they are small next to train)
        self.check_eval_splits = check_eval_splits
        if val_per_class is not None:
            check_positive("data.val_per_class", val_per_class, DatasetError,
                           note=" (images per class kept in the val split) or null (all of them)")
        self.val_per_class = val_per_class
        self.tables: Tables | None = None
        self.skipped: list[tuple[str, str, str]] = []  # (split, image id, why) left out
        self.datasets: dict[str, WSOLDataset] = {}

    # -- what subclasses provide ----------------------------------------------------------

    def read_tables(self) -> Tables:
        """Read the dataset's files (not the images) into train/val/test :class:`Split` s."""
        raise NotImplementedError

    def ready(self) -> bool:
        """False while the data is still to be written (the synthetic set before prepare_data)."""
        return True

    def readable_class_names(self, names: list[str]) -> list[str]:
        return names

    def masks_for(self, split: Split) -> list | None:
        """Per-image mask file(s) of a split when masks are loaded, else None."""
        if split.mask_paths is None or split.mask_root is None:
            return None
        return [tuple(split.mask_root / p for p in paths) for paths in split.mask_paths]

    # -- reading and checking -------------------------------------------------------------

    def _official_splits(self, train: Split, test: Split) -> dict[str, Split]:
        train_rows, val_rows = split_train_val(train.labels, np.arange(len(train)),
                                               self.val_fraction, self.split_seed)
        return {"train": train.take(train_rows, "train"), "val": train.take(val_rows, "val"),
                "test": test}

    def load_tables(self) -> Tables:
        """The tables, read once; the class count is checked against data.num_classes."""
        if self.tables is None:
            tables = self.read_tables()
            if self.num_classes is None:  # data.num_classes=null: the dataset's own count
                self.num_classes = len(tables.class_names)
            elif len(tables.class_names) != self.num_classes:
                raise DatasetError(
                    f"{tables.classes_from} lists {len(tables.class_names)} classes but "
                    f"data.num_classes={self.num_classes}. Set "
                    f"data.num_classes={len(tables.class_names)}."
                )
            if self.val_per_class is not None:
                self._limit_val(tables)
            if self.train_on == "val":
                tables.splits = self._val_as_training(tables.splits)
            self.tables = tables
        return self.tables

    def _val_as_training(self, splits: dict[str, Split]) -> dict[str, Split]:
        """``data.train_on=val``: the val split minus a seeded per-class ``holdout_fraction``
        trains, the held-out part validates; test is untouched (docs/methods.md, FSL)."""
        val = splits["val"]
        if val.mask_paths is not None:
            raise DatasetError(
                f"data.train_on=val: {self.dataset_name}'s val split holds instance masks, which "
                "camexp serves to evaluation only, so its training batches would have no targets. "
                "Train the few-shot baseline (method=fsl) on CUB or ImageNet."
            )
        train_rows, held_rows = split_train_val(val.labels, np.arange(len(val)),
                                                self.holdout_fraction, self.split_seed)
        return {**splits, "train": val.take(train_rows, "train"), "val": val.take(held_rows, "val")}

    def _limit_val(self, tables: Tables) -> None:
        """Keep ``val_per_class`` images of each class in the val split (the field's per-class
        budget of fully-annotated images), drawn without replacement, seeded by ``split_seed``
        (the same subset for every trial of a search, whatever the training seed). Images left
        out of val are not given to train. Classes with fewer images keep all (noted)."""
        val = tables.splits["val"]
        rows, short = rows_per_class(val.labels, self.val_per_class, self.split_seed)
        tables.splits["val"] = val.take(rows, "val")
        note = (f"data.val_per_class={self.val_per_class}: val keeps {len(rows)} of {len(val)} "
                f"images (seeded by data.split_seed={self.split_seed})")
        if short:
            names = ", ".join(f"{tables.class_names[c] if c < len(tables.class_names) else c} ({n})"
                              for c, n in short[:5])
            note += (f"; {len(short)} class(es) have fewer and keep all of theirs, e.g. {names}")
            log.warning("%s", note)
        tables.notes.append(note + ".")

    def check(self) -> None:
        """Fast checks before any model is built (raises DatasetError): the layout, every
        image on disk (directory listings, no decoding), labels, boxes, duplicate ids, and a
        few images decoded per split. Bad images follow ``data.on_bad_image``."""
        if self.ready() and not self.datasets:
            self._checked_tables()

    def _checked_tables(self) -> Tables:
        from camexp.data.checks import check_tables, format_problems

        tables = self.load_tables()
        if getattr(self, "_checked", False):
            return tables
        report = check_tables(tables, self.num_classes, sample=self.check_sample,
                              full_splits=("val", "test") if self.check_eval_splits else ())
        bad_images = [p for p in report.problems if p.bad_image]
        others = [p for p in report.problems if not p.bad_image]
        if others or (bad_images and self.on_bad_image == "error"):
            shown = others + (bad_images if self.on_bad_image == "error" else [])
            hint = (" Or set data.on_bad_image=skip to leave the unreadable or missing images "
                    "out (each is logged once)." if bad_images and self.on_bad_image == "error"
                    else "")
            raise DatasetError(
                f"{len(shown)} problem(s) in {tables.description}, found before training:\n"
                f"{format_problems(shown, limit=20)}\nFix them, then run python -m "
                f"camexp.check_data data=... for the full report.{hint}"
            )
        if bad_images:
            drop: dict[str, list[int]] = {}
            for problem in bad_images:
                drop.setdefault(problem.split, []).append(problem.row)
                self.skipped.append((problem.split, problem.image_id, problem.kind))
                log.warning("data.on_bad_image=skip: leaving out %s", problem.message)
            for name, rows in drop.items():
                tables.splits[name] = tables.splits[name].without(sorted(set(rows)))
        self._checked = True
        return tables

    # -- Lightning hooks ------------------------------------------------------------------

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        quiet_decoder_notice()  # before the workers start, which inherit it
        tables = self._checked_tables()
        if stage == "fit":
            self._check_training_splits(tables)
        self.datasets = {
            "train": self._dataset(tables.splits["train"], self.train_transform, seed=self.seed,
                                   train=True),
            "val": self._dataset(tables.splits["val"], self.eval_transform),
            "test": self._dataset(tables.splits["test"], self.eval_transform),
        }
        self.decode_on_device = self._decode_on_device()
        for dataset in self.datasets.values():
            dataset.decode_on_device = self.decode_on_device

    def _check_training_splits(self, tables: Tables) -> None:
        """Before training: refuse a train split smaller than one batch (no step would be
        taken), warn about classes without a training image and an empty val split."""
        from camexp.data.checks import TRAIN_TOO_SMALL, training_problems

        if getattr(self, "_training_checked", False):
            return
        problems = training_problems(tables, self.num_classes, self.batch_size)
        for problem in problems:
            if problem.kind == TRAIN_TOO_SMALL:
                raise DatasetError(f"Nothing to train: {problem.message} Found before training; "
                                   "python -m camexp.check_data data=... reports it too.")
        for problem in problems:
            say(f"camexp: WARNING: {problem.message}", logging.WARNING)
        self._training_checked = True

    def _decode_on_device(self) -> bool:
        """``data.decode_device=cuda`` where the run's device has a working GPU JPEG decoder;
        otherwise one line says why, and the workers decode on the CPU as by default."""
        if self.decode_device != "cuda":
            return False
        if getattr(self, "_decode_checked", None) is not None:  # fit, then test: one notice
            return self._decode_checked
        trainer = self.trainer
        device = (trainer.strategy.root_device if trainer is not None
                  else torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        problem = device_decoder_problem(device)
        if problem is not None:
            log.warning("data.decode_device=cuda: %s; decoding JPEGs on the CPU in the "
                        "DataLoader workers instead (data.decode_device=cpu).", problem)
        self._decode_checked = problem is None
        return self._decode_checked

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Move the batch; with device decoding, decode its JPEGs there (the bytes stay on
        the host: nvjpeg reads them from there)."""
        decode = batch.pop("decode", None) if isinstance(batch, dict) else None
        batch = super().transfer_batch_to_device(batch, device, dataloader_idx)
        if decode is None:
            return batch
        transform = self.train_transform if decode.get("train") else self.eval_transform
        return decode_batch(batch, decode, device, transform, self.on_bad_image)

    def _dataset(self, split: Split, transform, seed: int = 0, train: bool = False) -> WSOLDataset:
        masks = self.masks_for(split) if self.load_masks else None
        ignores = None
        if masks is not None and split.ignore_paths is not None and not train:
            ignores = [None if p is None else split.mask_root / p for p in split.ignore_paths]
        if masks is not None and train and split.mask_paths is not None:
            masks = None  # instance masks (OpenImages) serve evaluation only
        return WSOLDataset.from_split(split, transform, mask_files=masks, ignore_files=ignores,
                                      seed=seed, on_bad_image=self.on_bad_image,
                                      boxes_from_masks=split.mask_paths is not None
                                      and masks is not None)

    @property
    def class_names(self) -> list[str]:
        if self.tables is None:
            return [str(i) for i in range(self.num_classes)]
        return self.readable_class_names(self.tables.class_names)

    # -- loaders --------------------------------------------------------------------------

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.datasets[split]
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        batch_size = self.per_device_batch_size(self.batch_size if train else self.eval_batch_size,
                                                replicas)
        if train:
            sampler = EpochShuffleSampler(len(dataset), self.seed, replicas, rank)
            if trainer is not None:
                self._resume_mid_epoch(sampler, trainer, batch_size)
        else:
            sampler = EvalDistributedSampler(len(dataset), replicas, rank)
        devices = getattr(trainer, "num_devices", 1) if trainer else 1
        workers = auto_workers(devices) if self.num_workers is None else int(self.num_workers)
        on_gpu = (trainer.strategy.root_device.type == "cuda" if trainer
                  else torch.cuda.is_available())
        # training: the workers start at the epoch's first batch, after Lightning's set_epoch
        loader = EpochStartLoader if train else DataLoader
        return loader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=workers,
            pin_memory=bool(self.pin_memory and on_gpu),
            persistent_workers=bool(self.persistent_workers and workers > 0),
            prefetch_factor=4 if workers > 0 else None,
            collate_fn=collate,
        )

    @staticmethod
    def per_device_batch_size(global_batch_size: int, world_size: int) -> int:
        """``data.batch_size`` is the global batch: each of ``world_size`` processes loads its
        share, so the optimization (and the learning rate that suits it) does not change with
        the number of GPUs."""
        if global_batch_size % world_size:
            raise DatasetError(
                f"data.batch_size={global_batch_size} does not divide by the {world_size} "
                f"processes of this run; use a multiple of {world_size}, e.g. "
                f"data.batch_size={max(1, global_batch_size // world_size) * world_size}."
            )
        return global_batch_size // world_size

    def _resume_mid_epoch(self, sampler: EpochShuffleSampler, trainer, batch_size: int) -> None:
        """After a restore from a mid-epoch checkpoint (preemption), continue the epoch where
        it stopped instead of starting it over: the restored loop counts the batches done."""
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if 0 < done < len(sampler) // batch_size:
            sampler.resume_within(trainer.current_epoch, done * batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

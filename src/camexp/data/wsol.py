"""Every dataset as arrays: the :class:`Split` table, the metadata-folder source, the base DataModule.

A dataset source (CUB's text files, ILSVRC's folders and XML/CSV boxes, the field's metadata
folders) reads its files ONCE into one :class:`Split` per split: image ids (paths relative to an
images root), labels, boxes as one flat ``(M, 4)`` array with offsets, optional image sizes and
mask paths, and where each row was declared (file and line, for messages). :class:`WSOLDataModule`
then does the rest the same way for every dataset: fast checks (:mod:`camexp.data.checks`), the
``data.on_bad_image`` policy, :class:`~camexp.data.dataset.WSOLDataset` and the loaders.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from camexp.data.cub import DatasetError, check_inside, split_train_val, text_lines
from camexp.data.dataset import WSOLDataset, collate
from camexp.data.device_decode import DECODE_DEVICES, decode_batch, device_decoder_problem
from camexp.data.metadata import MetadataError, read_metadata
from camexp.data.samplers import EpochShuffleSampler, EvalDistributedSampler
from camexp.data.transforms import EvalTransform, TrainTransform

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
BAD_IMAGE_POLICIES = ("error", "skip")


# -- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where each row was declared: ``files[file_index[i]]``, line ``lines[i]`` (0: no line)."""

    files: tuple[str, ...]
    file_index: np.ndarray
    lines: np.ndarray

    @classmethod
    def lines_of(cls, file: str | Path, lines: Sequence[int] | np.ndarray) -> Origin:
        lines = np.asarray(lines, dtype=np.int64)
        return cls((str(file),), np.zeros(len(lines), dtype=np.int32), lines)

    @classmethod
    def files_of(cls, files: Sequence[str | Path], index: Sequence[int] | np.ndarray) -> Origin:
        index = np.asarray(index, dtype=np.int32)
        return cls(tuple(str(f) for f in files), index, np.zeros(len(index), dtype=np.int64))

    def __call__(self, row: int) -> str:
        file = self.files[int(self.file_index[row])] if self.files else "?"
        line = int(self.lines[row])
        return f"{file}, line {line}" if line > 0 else file

    def take(self, rows: np.ndarray) -> Origin:
        return Origin(self.files, self.file_index[rows], self.lines[rows])


def _empty_origin(count: int) -> Origin:
    return Origin((), np.zeros(count, dtype=np.int32), np.zeros(count, dtype=np.int64))


@dataclass(frozen=True)
class Split:
    """One split of a dataset, as arrays.

    ``ids[i]`` is the image path relative to ``images_root``; ``labels`` 0-based int64;
    image ``i``'s boxes are ``boxes[offsets[i]:offsets[i + 1]]`` (``x0, y0, x1, y1``, original
    pixels); ``sizes`` ``(N, 2)`` ``(w, h)`` or None when the source does not give them;
    ``mask_paths[i]`` the instance masks (relative to ``mask_root``), ``ignore_paths[i]`` the
    ignore mask or None (OpenImages). ``listed_in``/``label_origin`` (per image) and
    ``box_origin`` (per box) say where each was read, for messages.
    """

    name: str
    images_root: Path
    ids: list[str]
    labels: np.ndarray
    boxes: np.ndarray
    offsets: np.ndarray
    listed_in: Origin
    label_origin: Origin
    box_origin: Origin
    sizes: np.ndarray | None = None
    mask_root: Path | None = None
    mask_paths: list[list[str]] | None = None
    ignore_paths: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(
        cls,
        name: str,
        images_root: Path,
        ids: list[str],
        labels: Sequence[int] | np.ndarray,
        boxes: Sequence[np.ndarray] | None = None,
        listed_in: Origin | None = None,
        label_origin: Origin | None = None,
        box_origin: Origin | None = None,
        **extra,
    ) -> Split:
        """A split from per-image box arrays (``boxes[i]`` of shape (K_i, 4)); None: no boxes."""
        count = len(ids)
        if boxes is None:
            flat = np.zeros((0, 4), dtype=np.float64)
            offsets = np.zeros(count + 1, dtype=np.int64)
        else:
            counts = np.array([len(b) for b in boxes], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            flat = (np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes])
                    if count else np.zeros((0, 4)))
        listed_in = listed_in or _empty_origin(count)
        return cls(name, Path(images_root), list(ids), np.asarray(labels, dtype=np.int64), flat,
                   offsets, listed_in, label_origin or listed_in,
                   box_origin or _empty_origin(len(flat)), **extra)

    @property
    def num_boxes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def boxes_of(self, row: int) -> np.ndarray:
        return self.boxes[self.offsets[row] : self.offsets[row + 1]]

    def box_rows(self) -> np.ndarray:
        """The image row of every box."""
        return np.repeat(np.arange(len(self)), self.num_boxes)

    def image_file(self, row: int) -> Path:
        return self.images_root / self.ids[row]

    def take(self, rows: np.ndarray, name: str | None = None) -> Split:
        """The rows ``rows`` (in that order) as a new split."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = self.num_boxes[rows]
        starts = self.offsets[:-1][rows]
        total = int(counts.sum())
        new_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        box_index = np.repeat(starts - new_offsets[:-1], counts) + np.arange(total)
        return Split(
            name=name or self.name,
            images_root=self.images_root,
            ids=[self.ids[r] for r in rows],
            labels=self.labels[rows],
            boxes=self.boxes[box_index],
            offsets=new_offsets,
            listed_in=self.listed_in.take(rows),
            label_origin=self.label_origin.take(rows),
            box_origin=self.box_origin.take(box_index),
            sizes=None if self.sizes is None else self.sizes[rows],
            mask_root=self.mask_root,
            mask_paths=None if self.mask_paths is None else [self.mask_paths[r] for r in rows],
            ignore_paths=None if self.ignore_paths is None else [self.ignore_paths[r] for r in rows],
        )

    def without(self, rows: Sequence[int]) -> Split:
        keep = np.setdiff1d(np.arange(len(self)), np.asarray(list(rows), dtype=np.int64))
        return self.take(keep)


@dataclass
class Tables:
    """What a source read: the splits, the class names and where the classes are defined."""

    splits: dict[str, Split]
    class_names: list[str]
    classes_from: str
    description: str
    notes: list[str] = field(default_factory=list)
    # faults of single lines found while reading (camexp.data.cub.ReadProblem: kind, message)
    problems: list = field(default_factory=list)


# -- the field's metadata folders (data.split=wsol) ------------------------------------------


def _first_field_lines(path: Path) -> dict[str, list[int]]:
    """Line numbers of each first comma-separated field (image id) of a metadata file."""
    lines: dict[str, list[int]] = {}
    for number, raw in text_lines(path):
        text = raw.strip()
        if text:
            lines.setdefault(text.split(",", 1)[0], []).append(number)
    return lines


def resolve_metadata_root(metadata_root: str | Path | None, dataset: str, override: str) -> Path:
    """The folder holding ``train/ val/ test/`` of ``dataset`` (``metadata_root`` itself or
    ``metadata_root/<dataset>``); raises a DatasetError naming what was looked at."""
    if not metadata_root:
        raise DatasetError(
            f"data.split=wsol needs the field's metadata folders, but {override} is not set. "
            f"Get them from the wsolevaluation repository (metadata/{dataset}/train|val|test) "
            f"and pass {override}=/path/to/metadata/{dataset}."
        )
    root = Path(str(metadata_root)).expanduser()
    for candidate in (root, root / dataset):
        if any((candidate / split / "image_ids.txt").is_file() for split in SPLITS):
            return candidate
    raise DatasetError(
        f"No metadata split folder found under {root} (looked for {root}/<train|val|test>/"
        f"image_ids.txt and {root / dataset}/<split>/image_ids.txt). Point {override} at the "
        f"folder metadata/{dataset} of the wsolevaluation repository (each split folder holds "
        "image_ids.txt, class_labels.txt, image_sizes.txt, localization.txt)."
    )


def read_metadata_split(folder: Path, name: str, images_root: Path,
                        mask_root: Path | None = None, problems: list | None = None) -> Split:
    """One metadata split folder as a :class:`Split` (through :func:`read_metadata`). With
    ``problems`` (a list), its line faults are appended there (``Tables.problems``, listed by
    ``check_data``, refused before training) and their images left out; without, they raise."""
    try:
        meta = read_metadata(folder, problems=problems)
    except MetadataError as error:
        raise DatasetError(f"{error} (data.split=wsol reads {folder}.)") from error
    if meta.class_labels is None:
        raise DatasetError(
            f"{folder / 'class_labels.txt'}: file not found. Every split folder needs "
            "class_labels.txt ('path,label' a line) for training and evaluation."
        )
    ids = meta.image_ids
    id_lines = _first_field_lines(folder / "image_ids.txt")
    for image_id in ids:
        check_inside(image_id, f"{folder / 'image_ids.txt'}, line {id_lines[image_id][0]}")
    label_lines = _first_field_lines(folder / "class_labels.txt")
    listed_in = Origin.lines_of(folder / "image_ids.txt", [id_lines[i][0] for i in ids])
    label_origin = Origin.lines_of(folder / "class_labels.txt", [label_lines[i][0] for i in ids])
    labels = [meta.class_labels[i] for i in ids]
    sizes = None if meta.image_sizes is None else np.array([meta.image_sizes[i] for i in ids],
                                                           dtype=np.int64).reshape(-1, 2)
    boxes = box_origin = None
    mask_paths = ignore_paths = None
    if meta.boxes is not None:
        loc_lines = _first_field_lines(folder / "localization.txt")
        boxes = [meta.boxes[i] for i in ids]
        box_origin = Origin.lines_of(folder / "localization.txt",
                                     [n for i in ids for n in loc_lines[i]])
    elif meta.mask_paths is not None:
        mask_paths = [meta.mask_paths[i] for i in ids]
        ignore_paths = [(meta.ignore_paths or {}).get(i) for i in ids]
        where = f"{folder / 'localization.txt'} (image {{}})"
        for image_id, masks, ignore in zip(ids, mask_paths, ignore_paths, strict=True):
            for path in [*(masks if isinstance(masks, (list, tuple)) else [masks]), ignore]:
                if path is not None:
                    check_inside(str(path), where.format(image_id))
    return Split.build(name, images_root, ids, labels, boxes, listed_in, label_origin, box_origin,
                       sizes=sizes, mask_root=mask_root if mask_paths is not None else None,
                       mask_paths=mask_paths, ignore_paths=ignore_paths)


def read_metadata_splits(metadata_root: Path, images_root: Path, mask_root: Path | None = None,
                         problems: list | None = None) -> dict[str, Split]:
    """train, val and test of a metadata folder (all three must be there); line faults go to
    ``problems`` as in :func:`read_metadata_split`."""
    missing = [s for s in SPLITS if not (metadata_root / s / "image_ids.txt").is_file()]
    if missing:
        raise DatasetError(
            f"{metadata_root} lacks the split folder(s) {', '.join(missing)} "
            f"({metadata_root / missing[0] / 'image_ids.txt'} does not exist). data.split=wsol "
            "needs train/, val/ and test/, as in the wsolevaluation repository's metadata."
        )
    return {s: read_metadata_split(metadata_root / s, s, images_root, mask_root, problems)
            for s in SPLITS}


def names_from_ids(splits: dict[str, Split], num_classes: int) -> list[str]:
    """Class names from the first folder of each class's image ids (``001.Black_footed_...``)."""
    names = [str(i) for i in range(num_classes)]
    found: set[int] = set()
    for split in splits.values():
        for image_id, label in zip(split.ids, split.labels.tolist(), strict=True):
            if 0 <= label < num_classes and label not in found and "/" in image_id:
                parts = image_id.split("/")
                names[label] = parts[-2]
                found.add(label)
        if len(found) == num_classes:
            break
    return names


def rows_per_class(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, list]:
    """``per_class`` rows of each label, drawn without replacement from a generator seeded by
    ``seed`` (classes in sorted order, so the draw does not depend on the row order of other
    classes); returns the sorted rows and ``(label, count)`` of the classes that have fewer."""
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    short: list[tuple[int, int]] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) < per_class:
            short.append((int(label), len(rows)))
        chosen.append(rng.choice(rows, size=min(per_class, len(rows)), replace=False))
    rows = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return rows.astype(np.int64), short


# -- the base DataModule ----------------------------------------------------------------------


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
        if val_per_class is not None and (isinstance(val_per_class, bool)
                                          or not isinstance(val_per_class, int) or val_per_class < 1):
            raise DatasetError(
                f"data.val_per_class={val_per_class!r} must be a positive integer (images per "
                "class kept in the val split) or null (all of them)."
            )
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
        trains, the held-out part validates; test is untouched (PAPER.md 4.5, FSL)."""
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
                f"{len(shown)} problem(s) in {tables.description}, found before training: "
                f"{format_problems(shown, limit=20)} Fix them, then run python -m "
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
        tables = self._checked_tables()
        self.datasets = {
            "train": self._dataset(tables.splits["train"], self.train_transform, seed=self.seed,
                                   train=True),
            "val": self._dataset(tables.splits["val"], self.eval_transform),
            "test": self._dataset(tables.splits["test"], self.eval_transform),
        }
        self.decode_on_device = self._decode_on_device()
        for dataset in self.datasets.values():
            dataset.decode_on_device = self.decode_on_device

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
        return DataLoader(
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

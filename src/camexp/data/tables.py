"""A dataset as arrays: one :class:`Split` per split (image ids, labels, boxes with offsets,
optional sizes and masks, and where each row was declared), gathered in :class:`Tables`.

Every reader (CUB's text files, ILSVRC's folders, the field's metadata folders) fills these
once; the DataModules, the checks and ``check_data`` read only them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def split_train_val(labels: np.ndarray, train_rows: np.ndarray, val_fraction: float, seed: int):
    """Hold out ``val_fraction`` of each class's training images (at least one), seeded.

    Returns (train_rows, val_rows), both sorted.
    """
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for label in np.unique(labels[train_rows]):
        rows = train_rows[labels[train_rows] == label]
        count = max(1, round(len(rows) * val_fraction)) if len(rows) > 1 else 0
        val.append(rng.permutation(rows)[:count])
    val_rows = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    return np.setdiff1d(train_rows, val_rows), val_rows


SPLITS = ("train", "val", "test")


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
    ``box_origin`` (per box) say where each was read, and ``label_base`` how the label file
    numbers the classes, for messages.
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
    # what the label file writes for class 0 (1 for CUB's image_class_labels.txt): messages
    # show the file's own values
    label_base: int = 0

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
            label_base=self.label_base,
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

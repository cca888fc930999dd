"""Checks of a dataset read into :class:`~camexp.data.wsol.Tables`, and the report they make.

Cheap checks look at the tables and at directory listings only: labels out of range, duplicate
ids, boxes with ``x1 < x0`` or outside the image (sizes from the metadata, the XML files, or
JPEG/PNG headers read without decoding), images and masks missing on disk, the class count.
Decoding (unreadable or truncated files) is done on a seeded sample of each split, or on every
image with ``full=True``. Each :class:`Problem` names the file (and line) and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from camexp.core.errors import DatasetError
from camexp.data.images import quiet_decoder_notice, read_image
from camexp.data.tables import Split, Tables

BAD_IMAGE_KINDS = ("missing image", "unreadable image", "missing mask")
# boxes may touch the far border (x1 = w) and be one pixel off it (inclusive conventions)
BOX_TOLERANCE = 1.0


@dataclass
class Problem:
    """One fault: ``kind``, the split, a message naming the culprit and the fix; ``row`` and
    ``image_id`` for faults of one image."""

    kind: str
    split: str
    message: str
    row: int = -1
    image_id: str = ""

    @property
    def bad_image(self) -> bool:
        """Missing or unreadable files: what ``data.on_bad_image=skip`` may leave out."""
        return self.kind in BAD_IMAGE_KINDS


@dataclass
class SplitStats:
    name: str
    images: int
    per_class: np.ndarray
    boxes_per_image: np.ndarray
    missing: int = 0
    unreadable: int = 0
    decoded: int = 0
    sizes_from: str = ""


@dataclass
class Report:
    description: str
    num_classes: int
    classes_from: str
    splits: list[SplitStats] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)

    def apply_skip(self) -> None:
        """``data.on_bad_image=skip``: missing/unreadable images are skipped, not problems."""
        self.skipped += [p for p in self.problems if p.bad_image]
        self.problems = [p for p in self.problems if not p.bad_image]

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, limit: int = 50) -> str:
        return format_report(self, limit)


def _map(function: Callable, items: Iterable, workers: int = 8) -> list:
    items = list(items)
    if len(items) < 16 or workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items, chunksize=64))


def _header_size(path: Path) -> tuple[int, int] | str:
    """``(w, h)`` from the file's header (no decoding), or the error as text."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as error:  # PIL raises many kinds for a bad header
        return f"{type(error).__name__}: {error}"


def _decode(path: Path) -> str | None:
    try:
        read_image(path)
    except DatasetError as error:
        return str(error.__cause__ or error)
    return None


def existing(root: Path, relative: list[str]) -> np.ndarray:
    """Whether each ``root/relative[i]`` exists, from one directory listing per folder."""
    listings: dict[str, set[str] | None] = {}
    present = np.zeros(len(relative), dtype=bool)
    base = str(root)
    for row, rel in enumerate(relative):
        folder, _, name = rel.rpartition("/")
        listing = listings.get(folder, ())
        if listing == ():
            try:
                listing = set(os.listdir(os.path.join(base, folder) if folder else base))
            except OSError:
                listing = None
            listings[folder] = listing
        present[row] = listing is not None and name in listing
    return present


def symlinks_out_of(root: Path, relative: list[str]) -> tuple[int, str]:
    """How many of ``root/relative[i]`` lead out of ``root`` through a symbolic link (a linked
    folder or file), and one example (``path -> target``)."""
    real_root = os.path.realpath(root)
    inside = real_root.rstrip(os.sep) + os.sep
    folders: dict[str, list[str]] = {}
    for rel in relative:
        folder, _, name = rel.rpartition("/")
        folders.setdefault(folder, []).append(name)
    count, example = 0, ""
    for folder, names in folders.items():
        path = os.path.join(str(root), folder) if folder else str(root)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(inside):
            count += len(names)
            example = example or f"{path} -> {real}"
            continue
        try:
            linked = {entry.name for entry in os.scandir(path) if entry.is_symlink()}
        except OSError:
            continue
        for name in set(names) & linked:
            target = os.path.realpath(os.path.join(path, name))
            if not target.startswith(inside):
                count += 1
                example = example or f"{os.path.join(path, name)} -> {target}"
    return count, example


def _check_split(split: Split, num_classes: int, classes_from: str, sample: int | None,
                 seed: int, workers: int) -> tuple[SplitStats, list[Problem]]:
    problems: list[Problem] = []
    name = split.name
    stats = SplitStats(name, len(split), np.bincount(split.labels[(split.labels >= 0)
                                                                  & (split.labels < num_classes)],
                                                     minlength=num_classes),
                       split.num_boxes)

    # duplicate ids
    first: dict[str, int] = {}
    for row, image_id in enumerate(split.ids):
        if image_id in first:
            problems.append(Problem(
                "duplicate id", name,
                f"{split.listed_in(row)}: image {image_id!r} is listed a second time (first at "
                f"{split.listed_in(first[image_id])}). List each image once; remove the duplicate.",
                row, image_id))
        else:
            first[image_id] = row

    # labels
    base = split.label_base  # the file's own numbering (CUB's from 1)
    for row in np.flatnonzero((split.labels < 0) | (split.labels >= num_classes)):
        problems.append(Problem(
            "label out of range", name,
            f"{split.label_origin(row)}: image {split.ids[row]!r} has label "
            f"{split.labels[row] + base}, outside {base}..{num_classes - 1 + base} ({classes_from} "
            f"defines {num_classes} classes). Fix the label, or data.num_classes if the classes "
            "changed.", int(row), split.ids[row]))

    # images (and masks) on disk
    present = existing(split.images_root, split.ids)
    for row in np.flatnonzero(~present):
        problems.append(Problem(
            "missing image", name,
            f"{split.image_file(row)}: image listed in {split.listed_in(row)} is missing on disk. "
            "Restore the file (or point data.root at the folder holding it), or remove its line.",
            int(row), split.ids[row]))
    stats.missing = int((~present).sum())
    if split.mask_paths is not None and split.mask_root is not None:
        flat = [(row, p) for row, paths in enumerate(split.mask_paths) for p in paths]
        flat += [(row, p) for row, p in enumerate(split.ignore_paths or []) if p]
        mask_present = existing(split.mask_root, [p for _, p in flat])
        for (row, rel), ok in zip(flat, mask_present, strict=True):
            if not ok:
                problems.append(Problem(
                    "missing mask", name,
                    f"{split.mask_root / rel}: mask of image {split.ids[row]!r} (listed in "
                    f"{split.listed_in(row)}) is missing on disk. Restore it, or point "
                    "data.mask_root at the folder the mask paths are relative to.",
                    row, split.ids[row]))

    # boxes: order, then inside the image
    boxes = split.boxes
    box_rows = split.box_rows()
    finite = np.isfinite(boxes).all(axis=1)
    for b in np.flatnonzero(~finite):
        row = int(box_rows[b])
        problems.append(Problem(
            "box not finite", name,
            f"{split.box_origin(b)}: box {_fmt_box(boxes[b])} of image {split.ids[row]!r} has a "
            "coordinate that is not a number (NaN or infinite). Write the box's corners in "
            "pixels, or remove the line.", row, split.ids[row]))
    boxes = np.where(finite[:, None], boxes, 0.0)
    empty = finite & ((boxes[:, 2] == boxes[:, 0]) | (boxes[:, 3] == boxes[:, 1]))
    for b in np.flatnonzero(empty):
        row = int(box_rows[b])
        problems.append(Problem(
            "empty box", name,
            f"{split.box_origin(b)}: box {_fmt_box(boxes[b])} of image {split.ids[row]!r} has "
            "zero width or height (x1 = x0 or y1 = y0), so it covers no object. Fix the box, or "
            "remove the line.", row, split.ids[row]))
    bad_order = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    for b in bad_order:
        row = int(box_rows[b])
        problems.append(Problem(
            "box x1 < x0", name,
            f"{split.box_origin(b)}: box {_fmt_box(boxes[b])} of image {split.ids[row]!r} has "
            "x1 < x0 or y1 < y0. Boxes are corners (x0, y0, x1, y1), not x, y, width, height: "
            "write x1 = x + width, y1 = y + height.", row, split.ids[row]))
    unreadable: dict[int, str] = {}
    if len(boxes):
        sizes = split.sizes
        stats.sizes_from = "metadata"
        if sizes is None:
            stats.sizes_from = "image headers"
            rows = np.flatnonzero(present & (split.num_boxes > 0))
            found = _map(_header_size, [split.image_file(r) for r in rows], workers)
            sizes = np.zeros((len(split), 2), dtype=np.float64)
            for row, size in zip(rows.tolist(), found, strict=True):
                if isinstance(size, str):
                    unreadable[row] = size
                else:
                    sizes[row] = size
            known = sizes[box_rows].min(axis=1) > 0
        else:
            known = np.ones(len(boxes), dtype=bool)
        wh = np.asarray(sizes, dtype=np.float64)[box_rows]
        outside = known & ((boxes[:, 0] < -BOX_TOLERANCE) | (boxes[:, 1] < -BOX_TOLERANCE)
                           | (boxes[:, 2] > wh[:, 0] + BOX_TOLERANCE)
                           | (boxes[:, 3] > wh[:, 1] + BOX_TOLERANCE))
        for b in np.flatnonzero(outside):
            row = int(box_rows[b])
            problems.append(Problem(
                "box outside image", name,
                f"{split.box_origin(b)}: box {_fmt_box(boxes[b])} of image {split.ids[row]!r} "
                f"lies outside the image (w={int(wh[b, 0])}, h={int(wh[b, 1])} from "
                f"{stats.sizes_from}). Clip the box to the image or fix the line.",
                row, split.ids[row]))

    # decoding: a seeded sample, or everything
    candidates = np.array([r for r in np.flatnonzero(present) if r not in unreadable],
                          dtype=np.int64)
    if sample is not None and len(candidates) > sample:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, sample, replace=False))
    errors = _map(_decode, [split.image_file(r) for r in candidates], workers)
    stats.decoded = len(candidates) + len(unreadable)
    for row, error in zip(candidates.tolist(), errors, strict=True):
        if error is not None:
            unreadable[row] = error
    for row, error in sorted(unreadable.items()):
        problems.append(Problem(
            "unreadable image", name,
            f"{split.image_file(row)}: cannot read the image listed in {split.listed_in(row)} "
            f"({error}). Replace it with an intact copy, or set data.on_bad_image=skip.",
            row, split.ids[row]))
    stats.unreadable = len(unreadable)
    return stats, problems


def _fmt_box(box: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


def check_tables(tables: Tables, num_classes: int, sample: int | None = 8, seed: int = 0,
                 model_classes: int | None = None, workers: int = 8,
                 full_splits: tuple[str, ...] = (), symlinks: bool = False) -> Report:
    """Every check on every split; ``sample`` images decoded per split (None: all), every
    image of the splits in ``full_splits``. The faults found while reading the files
    (``tables.problems``) come first. ``symlinks`` notes the images reached through a
    symbolic link that leads out of the split's images folder (followed, but made visible)."""
    quiet_decoder_notice()
    found = len(tables.class_names)
    report = Report(tables.description, found, tables.classes_from, notes=list(tables.notes))
    for read in tables.problems:
        report.problems.append(Problem(read.kind, "-", read.message))
    for expected, key in ((num_classes, "data.num_classes"), (model_classes, "model.num_classes")):
        if expected is not None and expected != found:
            report.problems.append(Problem(
                "class count", "-",
                f"{tables.classes_from} lists {found} classes but {key}={expected}. Set "
                f"{key}={found} (model.num_classes follows data.num_classes by default)."))
    for split in tables.splits.values():
        stats, problems = _check_split(split, max(found, 1), tables.classes_from,
                                       None if split.name in full_splits else sample, seed,
                                       workers)
        report.splits.append(stats)
        if symlinks:
            count, example = symlinks_out_of(split.images_root, split.ids)
            if count:
                report.notes.append(
                    f"Symlinks: {count} {split.name} image(s) are reached through a symbolic "
                    f"link out of {split.images_root} (followed), e.g. {example}.")
        report.problems.extend(problems)
    return report


# -- splits that would train on nothing, or validate nothing ------------------------------------

TRAIN_TOO_SMALL = "train smaller than a batch"
CLASS_WITHOUT_TRAINING = "class without training images"
EMPTY_VAL = "empty val split"


def training_problems(tables: Tables, num_classes: int, batch_size: int) -> list[Problem]:
    """What makes training meaningless although every file is fine: a train split smaller than
    one batch (the incomplete last batch is dropped: no step at all), classes without a
    training image, an empty val split (no validation: "the best checkpoint by val" means
    nothing). A run refuses the first (:data:`TRAIN_TOO_SMALL`) and warns about the others."""
    problems: list[Problem] = []
    train = tables.splits.get("train")
    if train is not None and len(train) < batch_size:
        problems.append(Problem(
            TRAIN_TOO_SMALL, "train",
            f"the train split of {tables.description} has {len(train)} image(s), fewer than one "
            f"batch of data.batch_size={batch_size}; every epoch drops its incomplete last batch, "
            "so nothing would be trained (and the untrained network tested). "
            + (f"Lower data.batch_size to at most {len(train)}, or add training images."
               if len(train) else "Its list files name no training image: fill them.")))
    elif train is not None:
        labels = train.labels[(train.labels >= 0) & (train.labels < num_classes)]
        empty = np.flatnonzero(np.bincount(labels, minlength=num_classes) == 0)
        if len(empty):
            names = ", ".join(tables.class_names[c] if c < len(tables.class_names) else str(c)
                              for c in empty[:5])
            problems.append(Problem(
                CLASS_WITHOUT_TRAINING, "train",
                f"{len(empty)} of {num_classes} classes have no training image in {tables.description} "
                f"(e.g. {names}): the classifier cannot learn them and their test images count "
                f"as errors. Add training images of those classes, or remove them from "
                f"{tables.classes_from}."))
    val = tables.splits.get("val")
    if val is not None and len(val) == 0:
        problems.append(Problem(
            EMPTY_VAL, "val",
            f"the val split of {tables.description} is empty: nothing is validated, so the best "
            "checkpoint by val (callbacks.model_checkpoint.monitor) means nothing and the last "
            "epoch's weights are tested. With data.split=official each class needs at least two "
            "training images (data.val_fraction of them, at least one, go to val); with "
            "data.split=wsol, list images in the metadata's val split."))
    return problems


def problem_line(problem: Problem) -> str:
    """One problem as ``check_data`` lists it: indented, on one line."""
    return f"  [{problem.kind}] {problem.split}: {' '.join(problem.message.split())}"


def format_problems(problems: list[Problem], limit: int = 20) -> str:
    """The first ``limit`` problems, one a line (as ``check_data`` lists them)."""
    lines = [problem_line(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more.")
    return "\n".join(lines)


def _min_med_max(values: np.ndarray, mean: bool = False) -> str:
    if not len(values):
        return "-"
    middle = f"{values.mean():.2f}" if mean else f"{np.median(values):g}"
    return f"{values.min()}/{middle}/{values.max()}"


def format_report(report: Report, limit: int = 50) -> str:
    """The text ``python -m camexp.check_data`` prints."""
    out = [f"Dataset: {report.description}",
           f"Classes: {report.num_classes} (from {report.classes_from})"]
    header = ("split", "images", "classes", "per class min/med/max", "boxes/image min/mean/max",
              "missing", "unreadable", "decoded")
    rows = []
    for s in report.splits:
        with_images = s.per_class[s.per_class > 0]
        rows.append((s.name, str(s.images), str(len(with_images)),
                     _min_med_max(with_images),
                     _min_med_max(s.boxes_per_image, mean=True) if s.boxes_per_image.any() else "-",
                     str(s.missing), str(s.unreadable), f"{s.decoded} of {s.images}"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    sources: dict[str, list[str]] = {}
    for s in report.splits:
        if s.sizes_from:
            sources.setdefault(s.sizes_from, []).append(s.name)
    if sources:
        out.append("Box checks against image sizes from "
                   + "; ".join(f"{k} ({', '.join(v)})" for k, v in sources.items()) + ".")
    out.extend(report.notes)
    if report.skipped:
        out.append(f"Skipped (data.on_bad_image=skip): {len(report.skipped)} image(s)")
        out.append(format_problems(report.skipped, limit))
    if report.problems:
        counts: dict[str, int] = {}
        for p in report.problems:
            counts[p.kind] = counts.get(p.kind, 0) + 1
        out.append(f"Problems: {len(report.problems)} ("
                   + ", ".join(f"{n} {k}" for k, n in counts.items()) + ")")
        out.append(format_problems(report.problems, limit))
    else:
        out.append("Problems: none. OK")
    return "\n".join(out)

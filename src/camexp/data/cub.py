"""CUB-200-2011 in its official layout (docs/datasets.md), read once into arrays.

The same reader serves the real dataset and the embedded synthetic one, which is written in
this layout. The one extension we accept: ``bounding_boxes.txt`` may list an image id more
than once (one line per object); the official files have exactly one box per image.

Boxes are converted once, on reading, from CUB's ``x y width height`` to
``(x0, y0, x1, y1) = (x, y, x + width, y + height)`` in original-image pixels: the field's
metadata convention (see :mod:`camexp.data.transforms`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from camexp.core.errors import DatasetError
from camexp.data.text_files import ReadProblem, capped, check_inside, text_lines

LAYOUT_HELP = (
    "Expected the official CUB-200-2011 layout: a folder CUB_200_2011/ holding images.txt, "
    "image_class_labels.txt, train_test_split.txt, bounding_boxes.txt, classes.txt and "
    "images/<class_dir>/<name>.jpg (optionally segmentations/<class_dir>/<name>.png)."
)
REQUIRED_FILES = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "classes.txt",
)


@dataclass(frozen=True)
class CUBRecords:
    """Everything CUB's text files say about its images, one row per image.

    ``paths`` are relative to ``root / "images"``; ``labels`` are 0-based (CUB's are 1-based);
    ``boxes[i]`` is a (K, 4) float64 array of ``(x0, y0, x1, y1)`` in original-image pixels.
    """

    root: Path
    paths: list[str]
    cub_ids: np.ndarray
    labels: np.ndarray
    is_train: np.ndarray
    boxes: list[np.ndarray]
    class_names: list[str]
    has_masks: bool
    # where each row comes from (1-based line numbers), for error messages and check_data
    image_lines: np.ndarray | None = None
    label_lines: np.ndarray | None = None
    box_lines: list[np.ndarray] | None = None
    # faults of single lines, found while reading (the image or line is left out)
    problems: list[ReadProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def image_file(self, index: int) -> Path:
        return self.root / "images" / self.paths[index]

    def mask_file(self, index: int) -> Path:
        return self.root / "segmentations" / Path(self.paths[index]).with_suffix(".png")


def resolve_cub_root(root: str | Path) -> Path:
    """The folder holding ``images.txt``: ``root`` itself or ``root/CUB_200_2011``.

    Raises a :class:`DatasetError` naming the path looked at, the layout and the override.
    """
    root = Path(root).expanduser()
    for candidate in (root, root / "CUB_200_2011"):
        if all((candidate / name).is_file() for name in REQUIRED_FILES):
            return candidate
    present = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
    missing = [name for name in REQUIRED_FILES if not (present / name).is_file()]
    what = "does not exist" if not root.exists() else f"lacks {', '.join(missing)}"
    raise DatasetError(
        f"CUB-200-2011 not found: {present.resolve()} {what}. {LAYOUT_HELP} Download "
        "CUB_200_2011.tgz from Caltech's CUB-200-2011 page, extract it, and point camexp at it "
        "with data.root=/path/to/CUB_200_2011 (or run data=synthetic for the embedded dataset)."
    )


def _read_table(path: Path, columns: int, kinds: tuple[type, ...],
                problems: list[ReadProblem]) -> list[tuple[int, list]]:
    """Rows of a whitespace-separated CUB text file as (line number, typed fields); a
    malformed line is recorded in ``problems`` and left out.

    The last column of a 2-column file may contain spaces (never in the official files).
    """
    rows = []
    layout = " ".join(kind.__name__ for kind in kinds)
    for number, line in text_lines(path):
        if not line.strip():
            continue
        fields = line.split(maxsplit=columns - 1)
        if len(fields) != columns:
            problems.append(ReadProblem("malformed line", (
                f"{path}, line {number}: expected {columns} fields, found {len(fields)} in "
                f"{line.rstrip()!r}. Each line must be '{layout}'; fix or restore the file.")))
            continue
        try:
            rows.append((number, [kind(field) for kind, field in zip(kinds, fields, strict=True)]))
        except ValueError:
            problems.append(ReadProblem("malformed line", (
                f"{path}, line {number}: cannot read {line.rstrip()!r} as '{layout}'; fix or "
                "restore the file.")))
    return rows


def _by_image_id(path: Path, rows: list[tuple[int, list]], known: dict[int, int],
                 problems: list[ReadProblem]) -> tuple[dict[int, list], dict[int, int]]:
    """Map image id -> value (and its line); unknown and repeated ids are recorded, left out."""
    values: dict[int, list] = {}
    lines: dict[int, int] = {}
    for number, (image_id, *rest) in rows:
        if image_id not in known:
            problems.append(ReadProblem("unknown id", (
                f"{path}, line {number}: image id {image_id} is not listed in images.txt. "
                "Remove the line or add the image to images.txt.")))
        elif image_id in values:
            problems.append(ReadProblem("duplicate id", (
                f"{path}, line {number}: image id {image_id} appears a second time (first on "
                f"line {lines[image_id]}). Keep one line per image.")))
        else:
            values[image_id] = rest
            lines[image_id] = number
    return values, lines


def read_cub(root: str | Path) -> CUBRecords:
    """Read and cross-check CUB's text files (not the images) into :class:`CUBRecords`.

    Faults of single lines (a malformed line, an unknown or repeated id, a split value other
    than 0/1, a negative or non-finite box, an image without label, split or box) do not stop
    the reading: each is recorded in ``CUBRecords.problems`` with its file and line, and the
    image or line is left out, so that ``check_data`` lists them all. A labels out of range is
    kept (the checks report it with its line).
    """
    root = resolve_cub_root(root)
    problems: list[ReadProblem] = []

    classes = _read_table(root / "classes.txt", 2, (int, str), problems)
    class_names = [name.strip() for _, (_, name) in sorted(classes, key=lambda row: row[1][0])]
    class_ids = [class_id for _, (class_id, _) in classes]
    if sorted(class_ids) != list(range(1, len(class_ids) + 1)):
        raise DatasetError(
            f"{root / 'classes.txt'}: class ids must be 1..{len(class_ids)} with none missing "
            f"or repeated; found {sorted(class_ids)[:5]}... Restore the file from the tarball."
        )

    images = []
    id_to_row: dict[int, int] = {}
    image_line: dict[int, int] = {}
    for number, (image_id, path) in _read_table(root / "images.txt", 2, (int, str), problems):
        if image_id in id_to_row:
            problems.append(ReadProblem("duplicate id", (
                f"{root / 'images.txt'}, line {number}: image id {image_id} appears a second time "
                f"(first on line {image_line[image_id]}). Each image id must be unique.")))
            continue
        check_inside(path.strip(), f"{root / 'images.txt'}, line {number}")
        id_to_row[image_id] = len(id_to_row)
        image_line[image_id] = number
        images.append(path.strip())

    labels_file = root / "image_class_labels.txt"
    labels, label_line = _by_image_id(
        labels_file, _read_table(labels_file, 2, (int, int), problems), id_to_row, problems)
    split_file = root / "train_test_split.txt"
    splits, split_line = _by_image_id(
        split_file, _read_table(split_file, 2, (int, int), problems), id_to_row, problems)
    keep = {image_id: True for image_id in id_to_row}
    for image_id in id_to_row:
        for path, table in ((labels_file, labels), (split_file, splits)):
            if image_id not in table:
                problems.append(ReadProblem("no line", (
                    f"{path}: image id {image_id} ({images[id_to_row[image_id]]}, "
                    f"{root / 'images.txt'} line {image_line[image_id]}) has no line. Every "
                    "image in images.txt needs one.")))
                keep[image_id] = False
        if image_id in splits and splits[image_id][0] not in (0, 1):
            problems.append(ReadProblem("split value", (
                f"{split_file}, line {split_line[image_id]}: image id {image_id} has the value "
                f"{splits[image_id][0]}; it must be 1 (train) or 0 (test). Fix the line.")))
            keep[image_id] = False

    boxes_file = root / "bounding_boxes.txt"
    boxes: dict[int, list[list[float]]] = {}
    box_lines: dict[int, list[int]] = {}
    for number, (image_id, x, y, width, height) in _read_table(
        boxes_file, 5, (int, float, float, float, float), problems
    ):
        if image_id not in id_to_row:
            problems.append(ReadProblem("unknown id", (
                f"{boxes_file}, line {number}: image id {image_id} is not in images.txt. "
                "Remove the line or add the image.")))
            continue
        if not all(math.isfinite(v) for v in (x, y, width, height)):
            problems.append(ReadProblem("box not finite", (
                f"{boxes_file}, line {number}: box ({x:g}, {y:g}, {width:g}, {height:g}) of "
                f"image id {image_id} is not a number (NaN or infinite). Boxes are 'image_id x y "
                "width height' in pixels; fix the line.")))
            keep[image_id] = False
            continue
        if width < 0 or height < 0:
            problems.append(ReadProblem("negative box size", (
                f"{boxes_file}, line {number}: negative box size ({width:g}, {height:g}) of "
                "image id {image_id}. Boxes are 'image_id x y width height' with width, "
                "height >= 0; fix the line.").replace("{image_id}", str(image_id))))
            keep[image_id] = False
            continue
        boxes.setdefault(image_id, []).append([x, y, x + width, y + height])
        box_lines.setdefault(image_id, []).append(number)
    for image_id, row in id_to_row.items():
        if image_id not in boxes and keep[image_id]:
            problems.append(ReadProblem("no box", (
                f"{boxes_file}: image {images[row]} (id {image_id}) has no box. Every image "
                "needs at least one 'image_id x y width height' line.")))
            keep[image_id] = False

    problems = capped(problems, f"{root}'s text files")
    kept = [image_id for image_id in id_to_row if keep[image_id]]
    return CUBRecords(
        root=root,
        paths=[images[id_to_row[i]] for i in kept],
        cub_ids=np.array(kept, dtype=np.int64),
        labels=np.array([labels[i][0] - 1 for i in kept], dtype=np.int64),
        is_train=np.array([splits[i][0] == 1 for i in kept], dtype=bool),
        boxes=[np.asarray(boxes[i], dtype=np.float64) for i in kept],
        class_names=class_names,
        has_masks=(root / "segmentations").is_dir(),
        image_lines=np.array([image_line[i] for i in kept], dtype=np.int64),
        label_lines=np.array([label_line[i] for i in kept], dtype=np.int64),
        box_lines=[np.asarray(box_lines[i], dtype=np.int64) for i in kept],
        problems=problems,
    )



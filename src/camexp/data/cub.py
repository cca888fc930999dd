"""CUB-200-2011 in its official layout (PAPER.md section 3), read once into arrays.

The same reader serves the real dataset and the embedded synthetic one, which is written in
this layout. The one extension we accept: ``bounding_boxes.txt`` may list an image id more
than once (one line per object); the official files have exactly one box per image.

Boxes are converted once, on reading, from CUB's ``x y width height`` to
``(x0, y0, x1, y1) = (x, y, x + width, y + height)`` in original-image pixels: the field's
metadata convention (see :mod:`camexp.data.transforms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from camexp.errors import UserError

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


class DatasetError(UserError, ValueError):
    """A dataset on disk is missing or malformed; the message names the file and the fix."""


def check_inside(relative: str, where: str) -> str:
    """Refuse a path from a dataset's text files that would leave the dataset's folder.

    ``relative`` must be relative and free of ``..`` parts (``where`` names the file and line).
    """
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts:
        raise DatasetError(
            f"{where}: the path {relative!r} points outside the dataset folder (absolute, or "
            "with '..'). Paths in dataset files must be relative to the dataset's folder; "
            "fix the line."
        )
    return relative


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


def _read_table(path: Path, columns: int, kinds: tuple[type, ...]) -> list[tuple[int, list]]:
    """Rows of a whitespace-separated CUB text file as (line number, typed fields).

    The last column of a 2-column file may contain spaces (never in the official files).
    """
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=columns - 1)
            if len(fields) != columns:
                raise DatasetError(
                    f"{path}, line {number}: expected {columns} fields, found {len(fields)} in "
                    f"{line.rstrip()!r}. Each line must be "
                    f"'{' '.join(kind.__name__ for kind in kinds)}'; fix or restore the file."
                )
            try:
                rows.append((number, [kind(field) for kind, field in zip(kinds, fields, strict=True)]))
            except ValueError:
                raise DatasetError(
                    f"{path}, line {number}: cannot read {line.rstrip()!r} as "
                    f"'{' '.join(kind.__name__ for kind in kinds)}'; fix or restore the file."
                ) from None
    return rows


def _by_image_id(path: Path, rows: list[tuple[int, list]], known: dict[int, int]) -> dict[int, list]:
    """Map image id -> value, checking every id is known and appears once."""
    values: dict[int, list] = {}
    for number, (image_id, *rest) in rows:
        if image_id not in known:
            raise DatasetError(
                f"{path}, line {number}: image id {image_id} is not listed in images.txt. "
                "Remove the line or add the image to images.txt."
            )
        if image_id in values:
            raise DatasetError(
                f"{path}, line {number}: image id {image_id} appears a second time. "
                "Keep one line per image."
            )
        values[image_id] = rest
    return values


def read_cub(root: str | Path) -> CUBRecords:
    """Read and cross-check CUB's text files (not the images) into :class:`CUBRecords`."""
    root = resolve_cub_root(root)

    classes = _read_table(root / "classes.txt", 2, (int, str))
    class_names = [name.strip() for _, (_, name) in sorted(classes, key=lambda row: row[1][0])]
    class_ids = [class_id for _, (class_id, _) in classes]
    if sorted(class_ids) != list(range(1, len(class_ids) + 1)):
        raise DatasetError(
            f"{root / 'classes.txt'}: class ids must be 1..{len(class_ids)} with none missing "
            f"or repeated; found {sorted(class_ids)[:5]}... Restore the file from the tarball."
        )

    images = _read_table(root / "images.txt", 2, (int, str))
    id_to_row: dict[int, int] = {}
    for number, (image_id, _) in images:
        if image_id in id_to_row:
            raise DatasetError(
                f"{root / 'images.txt'}, line {number}: image id {image_id} appears twice. "
                "Each image id must be unique."
            )
        id_to_row[image_id] = len(id_to_row)
    paths = [check_inside(path.strip(), f"{root / 'images.txt'}, line {number}")
             for number, (_, path) in images]

    labels_file = root / "image_class_labels.txt"
    label_rows = _read_table(labels_file, 2, (int, int))
    labels = _by_image_id(labels_file, label_rows, id_to_row)
    label_line = {image_id: number for number, (image_id, _) in label_rows}
    split_file = root / "train_test_split.txt"
    splits = _by_image_id(split_file, _read_table(split_file, 2, (int, int)), id_to_row)
    for image_id in id_to_row:
        for path, table in ((labels_file, labels), (split_file, splits)):
            if image_id not in table:
                raise DatasetError(
                    f"{path}: image id {image_id} ({paths[id_to_row[image_id]]}) has no line. "
                    "Every image in images.txt needs one."
                )

    label_array = np.array([labels[i][0] - 1 for i in id_to_row], dtype=np.int64)
    bad = np.flatnonzero((label_array < 0) | (label_array >= len(class_names)))
    if bad.size:
        image_id = list(id_to_row)[bad[0]]
        raise DatasetError(
            f"{labels_file}, line {label_line[image_id]}: image id {image_id} has class {label_array[bad[0]] + 1}, outside "
            f"1..{len(class_names)} of classes.txt. Fix the label or classes.txt."
        )

    boxes_file = root / "bounding_boxes.txt"
    boxes: list[list[list[float]]] = [[] for _ in paths]
    box_lines: list[list[int]] = [[] for _ in paths]
    for number, (image_id, x, y, width, height) in _read_table(
        boxes_file, 5, (int, float, float, float, float)
    ):
        if image_id not in id_to_row:
            raise DatasetError(
                f"{boxes_file}, line {number}: image id {image_id} is not in images.txt. "
                "Remove the line or add the image."
            )
        if width < 0 or height < 0:
            raise DatasetError(
                f"{boxes_file}, line {number}: negative box size ({width}, {height}). "
                "Boxes are 'image_id x y width height' with width, height >= 0."
            )
        boxes[id_to_row[image_id]].append([x, y, x + width, y + height])
        box_lines[id_to_row[image_id]].append(number)
    for row, image_boxes in enumerate(boxes):
        if not image_boxes:
            raise DatasetError(
                f"{boxes_file}: image {paths[row]} has no box. Every image needs at least one "
                "'image_id x y width height' line."
            )

    return CUBRecords(
        root=root,
        paths=paths,
        cub_ids=np.array(list(id_to_row), dtype=np.int64),
        labels=label_array,
        is_train=np.array([splits[i][0] == 1 for i in id_to_row], dtype=bool),
        boxes=[np.asarray(b, dtype=np.float64) for b in boxes],
        class_names=class_names,
        has_masks=(root / "segmentations").is_dir(),
        image_lines=np.array([number for number, _ in images], dtype=np.int64),
        label_lines=np.array([label_line[i] for i in id_to_row], dtype=np.int64),
        box_lines=[np.asarray(lines, dtype=np.int64) for lines in box_lines],
    )


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

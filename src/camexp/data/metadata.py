"""Reader of the WSOL metadata folders (docs/datasets.md).

Layout: ``metadata/<CUB|ILSVRC|OpenImages>/<train|val|test>/`` with

* ``image_ids.txt``: one image id (a path relative to the image root) per line;
* ``class_labels.txt``: ``path,label`` (integer label);
* ``image_sizes.txt``: ``path,w,h`` (original width and height in pixels);
* ``localization.txt``: either boxes, ``path,x0,y0,x1,y1`` (one line per box, original pixels,
  corners), or masks (OpenImages), ``path,mask_path,ignore_path`` (one line per instance mask; the
  ignore path is given on the first line of an image and may be empty).

Every file is read once into plain Python/numpy containers (:class:`Metadata`), which keep the
line each row came from (:attr:`Metadata.lines`), so that later messages name it. A missing
folder or file raises :class:`MetadataError` at once. Faults of single lines (a malformed line,
a repeated id, a bad box, an image without its label or box) are all collected, each naming the
file, the line and the fix: ``read_metadata(..., problems=[])`` returns them in that list and
leaves the images they concern out (``check_data`` lists them all); without a list, one
:class:`MetadataError` lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from camexp.core.errors import DatasetError, MetadataError
from camexp.data.tables import SPLITS, Origin, Split
from camexp.data.text_files import ReadProblem, capped, check_inside, record_fault, text_lines

__all__ = [
    "FILES",
    "Metadata",
    "MetadataError",
    "TextRows",
    "read_boxes",
    "read_class_labels",
    "read_image_ids",
    "read_image_sizes",
    "read_localization",
    "read_mask_paths",
    "read_metadata",
    "read_rows",
    "resolve_split_dir",
]

FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")

#: image id -> the (1-based) numbers of the lines its rows were read from, in file order
LineTable = dict[str, list[int]]


@dataclass(frozen=True)
class Metadata:
    """The content of one split folder.

    Attributes:
        folder: the split folder.
        image_ids: image ids in file order.
        class_labels: id -> integer label, or None when ``class_labels.txt`` is absent.
        image_sizes: id -> ``(w, h)`` in pixels, or None when ``image_sizes.txt`` is absent.
        boxes: id -> ``(K, 4)`` float64 boxes ``(x0, y0, x1, y1)`` in original pixels, or None
            when there are no box annotations.
        mask_paths: id -> list of instance-mask paths (relative to a mask root), or None.
        ignore_paths: id -> ignore-mask path or None (no ignore region), or None.
        lines: file name (each of :data:`FILES`) -> :data:`LineTable` of the rows read from it
            (``localization.txt``: one line per box or mask, in file order; empty for an
            absent file).
    """

    folder: Path
    image_ids: list[str]
    class_labels: dict[str, int] | None = None
    image_sizes: dict[str, tuple[int, int]] | None = None
    boxes: dict[str, np.ndarray] | None = None
    mask_paths: dict[str, list[str]] | None = None
    ignore_paths: dict[str, str | None] | None = field(default=None)
    lines: dict[str, LineTable] = field(default_factory=dict)

    @property
    def has_boxes(self) -> bool:
        """True when ``localization.txt`` holds boxes."""
        return self.boxes is not None

    @property
    def has_masks(self) -> bool:
        """True when ``localization.txt`` holds mask paths (OpenImages style)."""
        return self.mask_paths is not None

    def where(self, file: str, image_id: str) -> str:
        """``"<folder>/<file>, line <n>"``: the first line of ``image_id`` in ``file``."""
        return f"{self.folder / file}, line {self.lines[file][image_id][0]}"

    def origin(self, file: str, every_row: bool = False) -> Origin:
        """Where the rows of :attr:`image_ids` were read in ``file``: each image's first line,
        or with ``every_row`` each of its lines (one per box of ``localization.txt``)."""
        table = self.lines[file]
        numbers = [n for i in self.image_ids for n in (table[i] if every_row else table[i][:1])]
        return Origin.lines_of(self.folder / file, numbers)


def resolve_split_dir(metadata_dir: str | Path, split: str | None = None) -> Path:
    """Find the split folder: ``metadata_dir/split`` if it holds ``image_ids.txt``, else
    ``metadata_dir`` itself.

    Raises:
        MetadataError: if neither folder holds ``image_ids.txt``.
    """
    root = Path(metadata_dir).expanduser()
    if split:
        candidate = root / split
        if (candidate / "image_ids.txt").is_file():
            return candidate
    if (root / "image_ids.txt").is_file():
        return root
    looked = [str(root / split / "image_ids.txt")] if split else []
    looked.append(str(root / "image_ids.txt"))
    raise MetadataError(
        f"no metadata found: none of {', '.join(looked)} exists. Point metadata_dir at the folder "
        "holding the split folders (e.g. metadata/CUB with test/image_ids.txt inside) or at the "
        "split folder itself."
    )


@dataclass(frozen=True)
class TextRows:
    """The non-blank lines of one metadata file, read once: ``(line number, text)``, 1-based
    numbers, line ends stripped. No row: an empty file (the field ships some: docs/datasets.md)."""

    path: Path
    rows: list[tuple[int, str]]


def read_rows(path: str | Path) -> TextRows:
    """Read a metadata file's non-blank lines (:class:`TextRows`)."""
    path = Path(path)
    if not path.is_file():
        raise MetadataError(
            f"{path}: file not found. The metadata folder needs {', '.join(FILES)}."
        )
    rows = []
    for number, raw in text_lines(path, MetadataError):
        text = raw.rstrip("\r\n")
        if text.strip():
            rows.append((number, text))
    return TextRows(path, rows)


Source = str | Path | TextRows


def _rows(source: Source) -> TextRows:
    return source if isinstance(source, TextRows) else read_rows(source)


def _note(lines: LineTable | None, image_id: str, number: int) -> None:
    """Record that a row of ``image_id`` was read from line ``number``."""
    if lines is not None:
        lines.setdefault(image_id, []).append(number)


Problems = list[ReadProblem] | None
# faults listed in the one error raised when no problems list is given
SHOWN_IN_ERROR = 20


def _record(problems: Problems, kind: str, error: MetadataError, text: str) -> None:
    """:func:`record_fault` with the image id of the line ``text``."""
    record_fault(problems, kind, error, text.split(",", 1)[0].strip() or None)


def _fields(path: Path, number: int, text: str, expected: int, layout: str) -> list[str]:
    parts = text.split(",")
    if len(parts) != expected:
        raise MetadataError(
            f"{path}:{number}: expected `{layout}` ({expected} comma-separated fields) but found "
            f"{len(parts)}: {text!r}. Fix the line (paths must not contain commas)."
        )
    if not parts[0]:
        raise MetadataError(f"{path}:{number}: the image id (first field) is empty: {text!r}.")
    return parts


def _number(path: Path, number: int, text: str, value: str, what: str, integer: bool) -> float:
    try:
        parsed = float(value) if not integer else int(value)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise MetadataError(
            f"{path}:{number}: {what} must be {kind}, got {value!r} in line {text!r}."
        ) from None
    if not np.isfinite(parsed):
        raise MetadataError(f"{path}:{number}: {what} is not finite ({value!r}) in line {text!r}.")
    return parsed


def read_image_ids(source: Source, problems: Problems = None,
                   lines: LineTable | None = None) -> list[str]:
    """Read ``image_ids.txt``: one id per line; a repeated id is a fault (the repeat left out).
    ``lines`` (if given) gets each id's line."""
    text_rows = _rows(source)
    file = text_rows.path
    ids: list[str] = []
    seen: dict[str, int] = {}
    for number, text in text_rows.rows:
        image_id = text.strip()
        if image_id in seen:
            # the image itself stays (its first line is valid): no image id on the fault
            error = MetadataError(
                f"{file}:{number}: image id {image_id!r} already appears on line {seen[image_id]}. "
                "Each image must be listed once; remove the duplicate."
            )
            _record(problems, "duplicate id", error, "")
            continue
        seen[image_id] = number
        _note(lines, image_id, number)
        ids.append(image_id)
    if not ids:
        raise MetadataError(f"{file}: no image id. The split must list at least one image.")
    return ids


def read_class_labels(source: Source, problems: Problems = None,
                      lines: LineTable | None = None) -> dict[str, int]:
    """Read ``class_labels.txt``: ``path,label`` lines -> dict id -> int label (``lines``, if
    given, gets the line of each row read)."""
    text_rows = _rows(source)
    file = text_rows.path
    labels: dict[str, int] = {}
    for number, text in text_rows.rows:
        try:
            image_id, value = _fields(file, number, text, 2, "path,label")
            label = int(_number(file, number, text, value, "the class label", integer=True))
            if label < 0:
                raise MetadataError(f"{file}:{number}: class label {label} is negative: {text!r}.")
            if image_id in labels and labels[image_id] != label:
                raise MetadataError(
                    f"{file}:{number}: image {image_id!r} gets label {label} but had "
                    f"{labels[image_id]} on an earlier line. Keep one label per image."
                )
        except MetadataError as error:
            _record(problems, "bad label", error, text)
            continue
        labels[image_id] = label
        _note(lines, image_id, number)
    return labels


def read_image_sizes(source: Source, problems: Problems = None,
                     lines: LineTable | None = None) -> dict[str, tuple[int, int]]:
    """Read ``image_sizes.txt``: ``path,w,h`` lines -> dict id -> ``(w, h)`` (``lines``, if
    given, gets the line of each row read)."""
    text_rows = _rows(source)
    file = text_rows.path
    sizes: dict[str, tuple[int, int]] = {}
    for number, text in text_rows.rows:
        try:
            image_id, ws, hs = _fields(file, number, text, 3, "path,w,h")
            w = int(_number(file, number, text, ws, "the width", integer=True))
            h = int(_number(file, number, text, hs, "the height", integer=True))
            if w <= 0 or h <= 0:
                raise MetadataError(
                    f"{file}:{number}: image size ({w}, {h}) must be positive: {text!r}."
                )
        except MetadataError as error:
            _record(problems, "bad image size", error, text)
            continue
        sizes[image_id] = (w, h)
        _note(lines, image_id, number)
    return sizes


def _localization_kind(text_rows: TextRows) -> str:
    path = text_rows.path
    for number, text in text_rows.rows:
        count = len(text.split(","))
        if count == 5:
            return "boxes"
        if count == 3:
            return "masks"
        raise MetadataError(
            f"{path}:{number}: a localization line has `path,x0,y0,x1,y1` (boxes) or "
            f"`path,mask_path,ignore_path` (masks), but this one has {count} fields: {text!r}."
        )
    raise MetadataError(f"{path}: the file is empty; it must hold boxes or mask paths.")


def read_boxes(
    source: Source, image_sizes: dict[str, tuple[int, int]] | None = None,
    problems: Problems = None, lines: LineTable | None = None,
) -> dict[str, np.ndarray]:
    """Read box lines ``path,x0,y0,x1,y1`` -> dict id -> ``(K, 4)`` float64, in file order.

    Checks ``0 <= x0 <= x1`` and ``0 <= y0 <= y1`` and, when ``image_sizes`` is given,
    ``x1 <= w`` and ``y1 <= h``. A faulty line is left out (its image is then left out by
    :func:`read_metadata`: a box fewer would change its score). ``lines`` (if given) gets the
    line of each box read.
    """
    text_rows = _rows(source)
    file = text_rows.path
    lists: dict[str, list[list[float]]] = {}
    for number, text in text_rows.rows:
        try:
            box = _box(file, number, text, image_sizes)
        except MetadataError as error:
            _record(problems, "bad box", error, text)
            continue
        lists.setdefault(box[0], []).append(box[1:])
        _note(lines, box[0], number)
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in lists.items()}


def _box(file: Path, number: int, text: str,
         image_sizes: dict[str, tuple[int, int]] | None) -> list:
    """``[image_id, x0, y0, x1, y1]`` of one box line, checked."""
    image_id, *values = _fields(file, number, text, 5, "path,x0,y0,x1,y1")
    x0, y0, x1, y1 = (
        _number(file, number, text, v, name, integer=False)
        for v, name in zip(values, ("x0", "y0", "x1", "y1"), strict=True)
    )
    if x1 < x0 or y1 < y0:
        raise MetadataError(
            f"{file}:{number}: box of {image_id!r} has x1 < x0 or y1 < y0 ({text!r}). Boxes "
            "are corners x0,y0,x1,y1, not x,y,width,height: write x1 = x + width, "
            "y1 = y + height."
        )
    if x0 < 0 or y0 < 0:
        raise MetadataError(
            f"{file}:{number}: box of {image_id!r} has a negative corner ({text!r}); clip it "
            "to the image."
        )
    if image_sizes is not None and image_id in image_sizes:
        w, h = image_sizes[image_id]
        if x1 > w or y1 > h:
            raise MetadataError(
                f"{file}:{number}: box of {image_id!r} ({text!r}) lies outside the image of "
                f"size w={w}, h={h} from image_sizes.txt. Fix the box or the size."
            )
    return [image_id, x0, y0, x1, y1]


def read_mask_paths(
    source: Source, problems: Problems = None, lines: LineTable | None = None
) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    """Read mask lines ``path,mask_path,ignore_path`` (``lines``, if given, gets the line of
    each mask read).

    Returns:
        ``(mask_paths, ignore_paths)``: id -> list of mask paths; id -> ignore path (None when
        empty). The ignore path may be repeated on later lines of the same image, or left empty.
    """
    text_rows = _rows(source)
    file = text_rows.path
    masks: dict[str, list[str]] = {}
    ignores: dict[str, str | None] = {}
    for number, text in text_rows.rows:
        try:
            image_id, mask_path, ignore_path = _fields(
                file, number, text, 3, "path,mask_path,ignore_path"
            )
            if not mask_path:
                raise MetadataError(
                    f"{file}:{number}: the mask path of {image_id!r} is empty: {text!r}."
                )
            previous = ignores.get(image_id)
            if ignore_path and previous is not None and previous != ignore_path:
                raise MetadataError(
                    f"{file}:{number}: image {image_id!r} gets ignore mask {ignore_path!r} but had "
                    f"{previous!r} before. One image has one ignore mask."
                )
        except MetadataError as error:
            _record(problems, "bad mask line", error, text)
            continue
        masks.setdefault(image_id, []).append(mask_path)
        _note(lines, image_id, number)
        if ignore_path:
            ignores[image_id] = ignore_path
        else:
            ignores.setdefault(image_id, None)
    return masks, ignores


def read_localization(
    source: Source, image_sizes: dict[str, tuple[int, int]] | None = None,
    problems: Problems = None, lines: LineTable | None = None,
) -> tuple[str, object]:
    """Read ``localization.txt`` of either kind (``lines``: as :func:`read_boxes`).

    Returns:
        ``("boxes", dict id -> (K, 4))`` or ``("masks", (mask_paths, ignore_paths))``.
    """
    text_rows = _rows(source)
    kind = _localization_kind(text_rows)
    if kind == "boxes":
        return kind, read_boxes(text_rows, image_sizes, problems, lines)
    return kind, read_mask_paths(text_rows, problems, lines)


def _check_known(file: Path, ids: Iterable[str], known: set[str], problems: list[ReadProblem]) -> None:
    unknown = [i for i in ids if i not in known]
    if unknown:
        problems.append(ReadProblem("unknown id", (
            f"{file}: {len(unknown)} image id(s) not listed in image_ids.txt, e.g. {unknown[0]!r}. "
            "The files of a split folder must describe the same images; regenerate them together."
        )))


def _check_covered(file: Path, what: str, ids: list[str], table: dict, faulty: set[str],
                   problems: list[ReadProblem]) -> None:
    """Images without a line in ``file`` (those whose line was faulty are listed already);
    :func:`read_metadata` leaves them out."""
    missing = [i for i in ids if i not in table and i not in faulty]
    if missing:
        problems.append(ReadProblem(f"no {what}", (
            f"{file}: no {what} for {len(missing)} image(s) of image_ids.txt, e.g. {missing[0]!r}. "
            f"Add the {what} or remove the image from image_ids.txt."
        )))


def _only(table: dict | None, keep: set[str]) -> dict | None:
    return None if table is None else {k: v for k, v in table.items() if k in keep}


def read_metadata(folder: str | Path, split: str | None = None,
                  problems: list[ReadProblem] | None = None) -> Metadata:
    """Read a split folder (or ``folder/split``); optional files may be absent.

    ``image_ids.txt`` is required. When present, ``class_labels.txt``, ``image_sizes.txt`` and
    ``localization.txt`` must cover every image id and mention no other; an empty
    ``image_sizes.txt`` or ``localization.txt`` (as the field publishes some) counts as absent.

    Every line fault is collected. With ``problems`` (a list), they are appended to it and the
    images they concern are left out of the returned :class:`Metadata`; without it, one
    :class:`MetadataError` lists them.

    Raises:
        MetadataError: for a missing folder/file, or for line faults when ``problems`` is None.
    """
    split_dir = resolve_split_dir(folder, split)
    found: list[ReadProblem] = []
    lines: dict[str, LineTable] = {name: {} for name in FILES}
    ids = read_image_ids(split_dir / "image_ids.txt", found, lines["image_ids.txt"])
    known = set(ids)

    def faulty() -> set[str]:
        return {p.image_id for p in found if p.image_id}

    labels = sizes = boxes = masks = ignores = None
    label_file = split_dir / "class_labels.txt"
    if label_file.is_file():
        labels = read_class_labels(label_file, found, lines["class_labels.txt"])
        _check_known(label_file, labels, known, found)
        _check_covered(label_file, "class label", ids, labels, faulty(), found)
    # the field's metadata has empty image_sizes.txt (every OpenImages split, ILSVRC train)
    # and localization.txt (the train splits): read as absent
    size_file = split_dir / "image_sizes.txt"
    size_rows = read_rows(size_file) if size_file.is_file() else None
    if size_rows is not None and size_rows.rows:
        sizes = read_image_sizes(size_rows, found, lines["image_sizes.txt"])
        _check_known(size_file, sizes, known, found)
        _check_covered(size_file, "image size", ids, sizes, faulty(), found)
    loc_file = split_dir / "localization.txt"
    loc_rows = read_rows(loc_file) if loc_file.is_file() else None
    if loc_rows is not None and loc_rows.rows:
        kind, content = read_localization(loc_rows, sizes, found, lines["localization.txt"])
        if kind == "boxes":
            boxes = content  # type: ignore[assignment]
            _check_known(loc_file, boxes, known, found)
            _check_covered(loc_file, "box", ids, boxes, faulty(), found)
        else:
            masks, ignores = content  # type: ignore[misc]
            _check_known(loc_file, masks, known, found)
            _check_covered(loc_file, "mask", ids, masks, faulty(), found)
    if found and problems is None:
        shown = " ".join(p.message for p in found[:SHOWN_IN_ERROR])
        more = f" ... and {len(found) - SHOWN_IN_ERROR} more." if len(found) > SHOWN_IN_ERROR else ""
        raise MetadataError(f"{len(found)} fault(s) in {split_dir}: {shown}{more}")
    if problems is not None:
        problems.extend(capped(found, str(split_dir)))
    left_out = faulty() | _uncovered(ids, labels, sizes, boxes, masks)
    kept = [i for i in ids if i not in left_out]
    keep = set(kept)
    return Metadata(
        folder=split_dir,
        image_ids=kept,
        class_labels=_only(labels, keep),
        image_sizes=_only(sizes, keep),
        boxes=_only(boxes, keep),
        mask_paths=_only(masks, keep),
        ignore_paths=_only(ignores, keep),
        lines={name: _only(table, keep) for name, table in lines.items()},
    )


def _uncovered(ids: list[str], *tables: dict | None) -> set[str]:
    """Images missing from one of the tables that are present."""
    return {i for i in ids for table in tables if table is not None and i not in table}


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
    for image_id in ids:
        check_inside(image_id, meta.where("image_ids.txt", image_id))
    listed_in = meta.origin("image_ids.txt")
    label_origin = meta.origin("class_labels.txt")
    labels = [meta.class_labels[i] for i in ids]
    sizes = None if meta.image_sizes is None else np.array([meta.image_sizes[i] for i in ids],
                                                           dtype=np.int64).reshape(-1, 2)
    boxes = box_origin = None
    mask_paths = ignore_paths = None
    if meta.boxes is not None:
        boxes = [meta.boxes[i] for i in ids]
        box_origin = meta.origin("localization.txt", every_row=True)
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

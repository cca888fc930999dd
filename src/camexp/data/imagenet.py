"""ILSVRC 2012 classification-localization as users have it on disk (docs/datasets.md).

``data.root`` is the folder holding ``train/`` and ``val/`` (also accepted: the Kaggle
download's top folder, whose images live in ``ILSVRC/Data/CLS-LOC/``):

* ``train/<wnid>/<wnid>_<n>.JPEG``: 1000 class folders. Class ``k`` is the ``k``-th wnid in
  sorted order, as torchvision's ``ImageFolder`` orders them, so torchvision's pretrained
  ImageNet classifiers line up.
* ``val/ILSVRC2012_val_000xxxxx.JPEG`` (or ``val/<wnid>/...``, torchvision's re-foldered
  layout), with boxes from EITHER one PASCAL-VOC XML per image (``ILSVRC2012_bbox_val_v3``:
  in ``val/`` next to the images, ``bbox_val/``, ``val_bbox/``, ``ILSVRC2012_bbox_val_v3/val/``
  or the Kaggle ``ILSVRC/Annotations/CLS-LOC/val/``) OR ``LOC_val_solution.csv``
  (``ImageId,PredictionString``, repeated ``<wnid> x0 y0 x1 y1``) with
  ``LOC_synset_mapping.txt`` (``<wnid> <names>``). ``data.val_boxes`` names the XML folder or
  the CSV when they are elsewhere. Every box of an image is kept.

Splits: ``official`` = all train folders (train) / the 50k val images (test), validation on a
seeded per-class ``val_fraction`` of the val images (they need boxes; they stay in test). ``wsol`` = the field's ``metadata/ILSVRC`` (ImageNetV2 as val, the 50k
val as test), ids relative to ``data.root``.
"""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from camexp.core.errors import DatasetError
from camexp.data.metadata import read_metadata_splits, resolve_metadata_root
from camexp.data.tables import Origin, Split, Tables, split_train_val
from camexp.data.text_files import ReadProblem, capped, record_fault, text_lines
from camexp.data.wsol import WSOLDataModule

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
LAYOUT_HELP = (
    "Expected ILSVRC 2012 as extracted: data.root holding train/<wnid>/<wnid>_<n>.JPEG and "
    "val/ILSVRC2012_val_<8 digits>.JPEG, with the val boxes as one XML per image "
    "(ILSVRC2012_bbox_val_v3, in val/ or bbox_val/) or as LOC_val_solution.csv plus "
    "LOC_synset_mapping.txt (in data.root or its parent)."
)


def resolve_imagenet_root(root: str | Path) -> Path:
    """The folder holding ``train/`` and/or ``val/``: ``root`` or ``root/ILSVRC/Data/CLS-LOC``."""
    root = Path(root).expanduser()
    for candidate in (root, root / "ILSVRC" / "Data" / "CLS-LOC", root / "Data" / "CLS-LOC"):
        if (candidate / "train").is_dir() or (candidate / "val").is_dir():
            return candidate
    what = "does not exist" if not root.exists() else "has neither train/ nor val/"
    raise DatasetError(
        f"ImageNet (ILSVRC 2012) not found: {root.resolve()} {what}. {LAYOUT_HELP} Download "
        "the ILSVRC2012 train and val tarballs (and ILSVRC2012_bbox_val_v3.tgz) from "
        "image-net.org, or the Kaggle 'ImageNet Object Localization Challenge', and pass "
        "data.root=/path/to/imagenet."
    )


def _search_dirs(root: Path) -> list[Path]:
    """Where side files (CSV, mapping, XML folders) may be: root and up to three parents."""
    return [root, *list(root.parents)[:3]]


def _fault(problems: list[ReadProblem] | None, kind: str, message: str) -> None:
    """:func:`record_fault` of a :class:`DatasetError` with ``message``."""
    record_fault(problems, kind, DatasetError(message))


def read_synset_mapping(path: Path, problems: list[ReadProblem] | None = None) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``) -> wnid -> first name."""
    names: dict[str, str] = {}
    for number, line in text_lines(path):
        if not line.strip():
            continue
        wnid, _, rest = line.strip().partition(" ")
        if not wnid.startswith("n") or not wnid[1:].isdigit():
            _fault(problems, "malformed line", (
                f"{path}, line {number}: {line.strip()!r} does not start with a wnid "
                "(n + 8 digits). Each line is '<wnid> <names>'; restore the file."))
            continue
        names[wnid] = rest.split(",")[0].strip() or wnid
    return names


def _list_images(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())


def read_train(root: Path) -> tuple[list[str], list[str], np.ndarray, list[int]]:
    """``train/<wnid>/``: (sorted wnids, ids ``train/<wnid>/<file>``, labels, class of each)."""
    train = root / "train"
    with os.scandir(train) as entries:
        wnids = sorted(e.name for e in entries if e.is_dir())
    if not wnids:
        raise DatasetError(f"{train} holds no class folder. {LAYOUT_HELP}")
    ids: list[str] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        names = _list_images(train / wnid)
        if not names:
            raise DatasetError(
                f"{train / wnid}: class folder with no image (.JPEG/.jpg/.png). Restore its "
                "images or remove the folder (the class count would change)."
            )
        ids.extend(f"train/{wnid}/{name}" for name in names)
        labels.extend([label] * len(names))
    return wnids, ids, np.asarray(labels, dtype=np.int64), labels


def find_val_boxes(root: Path, explicit: str | None) -> tuple[str, Path]:
    """``("xml", folder)`` or ``("csv", file)``: the val boxes that are present."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file():
            return "csv", path
        if path.is_dir() and any(p.suffix == ".xml" for p in path.iterdir()):
            return "xml", path
        raise DatasetError(
            f"data.val_boxes={explicit}: neither a CSV file (LOC_val_solution.csv) nor a "
            "folder of ILSVRC2012_val_*.xml files. Point it at one of them, or set it to null "
            "to look in the usual places."
        )
    looked = []
    for base in _search_dirs(root):
        for folder in (base / "val", base / "bbox_val", base / "val_bbox",
                       base / "ILSVRC2012_bbox_val_v3" / "val", base / "ILSVRC2012_bbox_val_v3",
                       base / "Annotations" / "CLS-LOC" / "val",
                       base / "ILSVRC" / "Annotations" / "CLS-LOC" / "val"):
            looked.append(str(folder))
            if folder.is_dir() and next(folder.glob("ILSVRC2012_val_*.xml"), None):
                return "xml", folder
        csv_file = base / "LOC_val_solution.csv"
        looked.append(str(csv_file))
        if csv_file.is_file():
            return "csv", csv_file
    raise DatasetError(
        f"No ImageNet val boxes found for {root / 'val'}: looked for ILSVRC2012_val_*.xml in "
        f"{', '.join(looked[:6])}, ... and for LOC_val_solution.csv next to data.root. "
        f"{LAYOUT_HELP} Or name them with data.val_boxes=/path/to/xml_folder_or_csv."
    )


def _val_image(root: Path, stem: str, wnid: str, foldered: bool) -> str:
    """The val image id (relative to root) of an image stem."""
    return f"val/{wnid}/{stem}.JPEG" if foldered else f"val/{stem}.JPEG"


def read_val_xml(root: Path, folder: Path, wnid_to_label: dict[str, int], foldered: bool,
                 problems: list[ReadProblem] | None = None) -> Split:
    """One XML per image: boxes, the label (the objects' wnid) and the image size. A faulty
    file is recorded in ``problems`` and its image left out (raised without a list)."""
    files = sorted(folder.glob("ILSVRC2012_val_*.xml"))
    ids, labels, boxes, sizes, box_file, read = [], [], [], [], [], []
    for index, path in enumerate(files):
        try:
            tree = ET.parse(path).getroot()
            size = tree.find("size")
            w, h = int(size.findtext("width")), int(size.findtext("height"))
            objects = [(o.findtext("name").strip(),
                        [float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
                       for o in tree.iter("object")]
        except (ET.ParseError, AttributeError, TypeError, ValueError) as error:
            _fault(problems, "unreadable annotation", (
                f"{path}: not a readable PASCAL-VOC annotation ({error}); it needs <size> "
                "<width>/<height> and <object><name>wnid</name><bndbox><xmin>..</bndbox>. "
                "Restore it from ILSVRC2012_bbox_val_v3.tgz."))
            continue
        if not objects:
            _fault(problems, "no box", f"{path}: no <object>. Each val image has at least one box; "
                                       "restore the file from ILSVRC2012_bbox_val_v3.tgz.")
            continue
        wnid = objects[0][0]
        if wnid not in wnid_to_label:
            _fault(problems, "unknown class", (
                f"{path}: class {wnid!r} is not one of the {len(wnid_to_label)} classes "
                "(train/ folders or LOC_synset_mapping.txt). Check data.root and the XML files."))
            continue
        ids.append(_val_image(root, path.stem, wnid, foldered))
        labels.append(wnid_to_label[wnid])
        boxes.append(np.array([b for _, b in objects], dtype=np.float64))
        sizes.append((w, h))
        box_file.extend([index] * len(objects))
        read.append(index)
    return Split.build("test", root, ids, labels, boxes,
                       listed_in=Origin.files_of(files, read),
                       box_origin=Origin.files_of(files, box_file),
                       sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2))


def read_val_csv(root: Path, path: Path, wnid_to_label: dict[str, int], foldered: bool,
                 problems: list[ReadProblem] | None = None) -> Split:
    """``LOC_val_solution.csv``: ``ImageId,PredictionString`` with ``wnid x0 y0 x1 y1`` groups.
    A faulty line is recorded in ``problems`` and its image left out (raised without a list)."""
    ids, labels, boxes, lines = [], [], [], []
    for number, row in enumerate(csv.reader(line for _, line in text_lines(path)), start=1):
        if not row or (number == 1 and row[0] == "ImageId"):
            continue
        fields = row[1].split() if len(row) == 2 else []
        if not fields or len(fields) % 5:
            _fault(problems, "malformed line", (
                f"{path}, line {number}: expected 'ImageId,<wnid> x0 y0 x1 y1 [...]' (groups "
                f"of 5), found {','.join(row)!r}. Restore LOC_val_solution.csv."))
            continue
        groups = [fields[i : i + 5] for i in range(0, len(fields), 5)]
        try:
            image_boxes = [[float(v) for v in g[1:]] for g in groups]
        except ValueError:
            _fault(problems, "malformed line", (
                f"{path}, line {number}: box coordinates must be numbers in "
                f"{','.join(row)!r}. Restore LOC_val_solution.csv."))
            continue
        wnid = groups[0][0]
        if wnid not in wnid_to_label:
            _fault(problems, "unknown class", (
                f"{path}, line {number}: class {wnid!r} is not one of the "
                f"{len(wnid_to_label)} classes (train/ folders or LOC_synset_mapping.txt)."))
            continue
        ids.append(_val_image(root, row[0].strip(), wnid, foldered))
        labels.append(wnid_to_label[wnid])
        boxes.append(np.asarray(image_boxes, dtype=np.float64))
        lines.append(number)
    order = np.argsort(ids, kind="stable")
    box_lines = [lines[i] for i in order for _ in range(len(boxes[i]))]
    return Split.build("test", root, [ids[i] for i in order], [labels[i] for i in order],
                       [boxes[i] for i in order],
                       listed_in=Origin.lines_of(path, [lines[i] for i in order]),
                       box_origin=Origin.lines_of(path, box_lines))


class ImageNetDataModule(WSOLDataModule):
    """ILSVRC 2012 (``data=imagenet``); see the module docstring for the layouts read."""

    dataset_name = "ImageNet (ILSVRC 2012)"

    def __init__(self, root: str, num_classes: int, val_boxes: str | None = None, **kwargs) -> None:
        super().__init__(root, num_classes, **kwargs)
        self.val_boxes = val_boxes

    def read_tables(self) -> Tables:
        root = resolve_imagenet_root(self.root)
        mapping_file = next((d / "LOC_synset_mapping.txt" for d in _search_dirs(root)
                             if (d / "LOC_synset_mapping.txt").is_file()), None)
        problems: list[ReadProblem] = []  # line faults, all listed by check_data
        mapping = read_synset_mapping(mapping_file, problems) if mapping_file else {}
        if self.split == "wsol":
            return self._read_wsol(root, mapping, problems)
        if (root / "train").is_dir():
            wnids, ids, labels, _ = read_train(root)
            classes_from = f"{root / 'train'} (class folders)"
            if mapping and set(mapping) != set(wnids):
                raise DatasetError(
                    f"{mapping_file} lists {len(mapping)} wnids but {root / 'train'} has "
                    f"{len(wnids)} class folders, and they differ (e.g. "
                    f"{sorted(set(mapping) ^ set(wnids))[0]}). Restore the missing class folders."
                )
            train = Split.build("train", root, ids, labels,
                                listed_in=Origin.files_of([root / "train" / w for w in wnids],
                                                          labels))
        elif mapping:
            wnids, classes_from = sorted(mapping), str(mapping_file)
            train = Split.build("train", root, [], [])
        else:
            raise DatasetError(f"{root / 'train'} does not exist, and no LOC_synset_mapping.txt "
                               f"gives the classes. {LAYOUT_HELP}")
        wnid_to_label = {w: i for i, w in enumerate(wnids)}
        if not (root / "val").is_dir():
            raise DatasetError(f"{root / 'val'} does not exist: the test split is the 50k val "
                               f"images. {LAYOUT_HELP}")
        foldered = any(e.is_dir() and e.name in wnid_to_label for e in os.scandir(root / "val"))
        kind, where = find_val_boxes(root, self.val_boxes)
        reader = read_val_xml if kind == "xml" else read_val_csv
        test = reader(root, where, wnid_to_label, foldered, problems)
        self._wnids = wnids
        names = [mapping.get(w, w) for w in wnids]
        # ILSVRC train has no boxes for most images, and validation measures localization:
        # val is a seeded per-class val_fraction of the val images (all of which stay in test,
        # the literature's 50k). data.split=wsol validates on ImageNetV2 instead.
        _, val_rows = split_train_val(test.labels, np.arange(len(test)), self.val_fraction,
                                      self.split_seed)
        splits = {"train": train, "val": test.take(val_rows, "val"), "test": test}
        return Tables(splits, names, classes_from,
                      f"ImageNet ILSVRC 2012 (official split) at {root}, val boxes from {where}",
                      notes=[f"Val boxes: {kind.upper()} ({where})."],
                      problems=capped(problems, f"the val boxes ({where})"))

    def _read_wsol(self, root: Path, mapping: dict[str, str], problems: list[ReadProblem]) -> Tables:
        metadata = resolve_metadata_root(self.metadata_root, "ILSVRC", "data.metadata_root")
        splits = read_metadata_splits(metadata, root, problems=problems)
        if (root / "train").is_dir():
            with os.scandir(root / "train") as entries:
                wnids = sorted(e.name for e in entries if e.is_dir())
        else:
            wnids = sorted(mapping)
        if len(wnids) == self.num_classes:
            names = [mapping.get(w, w) for w in wnids]
            classes_from = f"{root / 'train'} (class folders)"
        else:
            names = [str(i) for i in range(self.num_classes)]
            classes_from = f"data.num_classes (labels of {metadata})"
        return Tables(splits, names, classes_from,
                      f"ImageNet ILSVRC 2012 (wsol metadata {metadata}) with images under {root}",
                      problems=problems)

"""The CUB-layout LightningDataModule: real CUB-200-2011 and the embedded synthetic dataset.

``data=cub`` points ``root`` at an extracted ``CUB_200_2011``; ``data=synthetic`` sets
``synthetic`` to a generator spec, writes the dataset once in the CUB layout under ``root``
and then reads it through exactly the same code.

Splits (``data.split``):

* ``official``: train and test from ``train_test_split.txt``; validation is a seeded, per-class
  ``val_fraction`` of train, held out from training.
* ``wsol``: the field's metadata folders ``data.metadata_root`` (``metadata/CUB`` with
  ``train/ val/ test/``; val is CUBV2 "train-fullsup"), image ids relative to the CUB images
  folder (``data.root/images``, or ``data.root`` itself when it has no ``images/``).

Everything else (checks, datasets, loaders) is :class:`camexp.data.wsol.WSOLDataModule`'s.
The ImageNet and OpenImages DataModules live in :mod:`camexp.data.imagenet` and
:mod:`camexp.data.openimages`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from camexp.core.errors import DatasetError
from camexp.data.cub import CUBRecords, read_cub, resolve_cub_root
from camexp.data.metadata import names_from_ids, read_metadata_splits, resolve_metadata_root
from camexp.data.tables import Origin, Split, Tables
from camexp.data.text_files import text_lines
from camexp.data.wsol import WSOLDataModule


class CUBDataModule(WSOLDataModule):
    """Serves CUB-layout data; every batch is a dict (see :func:`camexp.data.dataset.collate`)."""

    dataset_name = "CUB-200-2011"

    def __init__(self, root: str, num_classes: int, synthetic: dict[str, Any] | None = None,
                 **kwargs) -> None:
        """``synthetic``: the spec of the embedded dataset, written under ``root`` on first use;
        the other options are :class:`WSOLDataModule`'s."""
        super().__init__(root, num_classes, **kwargs)
        self.synthetic = dict(synthetic) if synthetic else None
        if self.synthetic is not None and self.split != "official":
            raise DatasetError(
                f"data.split={self.split!r} needs the real CUB-200-2011 images and metadata; the "
                "synthetic dataset has its official split only (data.split=official)."
            )
        self.records: CUBRecords | None = None

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

    def ready(self) -> bool:
        # the synthetic set is written by prepare_data; it is checked in setup
        return self.synthetic is None

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            self.dataset_root()

    def read_tables(self) -> Tables:
        if self.split == "wsol":
            return self._read_wsol()
        records = self.records = read_cub(self.dataset_root())
        root = records.root
        box_lines = (np.concatenate(records.box_lines) if records.box_lines
                     else np.zeros(0, dtype=np.int64))
        everything = Split.build(
            "all", root / "images", records.paths, records.labels, records.boxes,
            listed_in=Origin.lines_of(root / "images.txt", records.image_lines),
            label_origin=Origin.lines_of(root / "image_class_labels.txt", records.label_lines),
            box_origin=Origin.lines_of(root / "bounding_boxes.txt", box_lines),
            label_base=1,  # CUB numbers its classes from 1
        )
        train = everything.take(np.flatnonzero(records.is_train), "train")
        test = everything.take(np.flatnonzero(~records.is_train), "test")
        kind = (f"synthetic, CUB layout, drawn with data.synthetic.seed={self.synthetic.get('seed')}"
                if self.synthetic is not None else "official split")
        return Tables(self._official_splits(train, test), records.class_names,
                      str(root / "classes.txt"), f"CUB-200-2011 ({kind}) at {root}",
                      problems=list(records.problems))

    def _read_wsol(self) -> Tables:
        metadata = resolve_metadata_root(self.metadata_root, "CUB", "data.metadata_root")
        root = Path(self.root).expanduser()
        try:
            cub = resolve_cub_root(root)
        except DatasetError:
            cub = None
        images_root = cub / "images" if cub is not None else (
            root / "images" if (root / "images").is_dir() else root)
        problems: list = []
        splits = read_metadata_splits(metadata, images_root, problems=problems)
        if cub is not None:
            names = [line.split(maxsplit=1)[1].strip() for _, line in
                     text_lines(cub / "classes.txt") if line.strip()]
            classes_from = str(cub / "classes.txt")
        else:
            if self.num_classes is None:
                raise DatasetError(
                    f"data.num_classes is not set and {root} has no classes.txt to count the "
                    "classes from. Set data.num_classes=<number of classes>."
                )
            names = names_from_ids(splits, self.num_classes)
            classes_from = f"data.num_classes (no classes.txt under {root})"
        return Tables(splits, names, classes_from,
                      f"CUB-200-2011 (wsol metadata {metadata}) with images under {images_root}",
                      problems=problems)

    def masks_for(self, split: Split) -> list | None:
        segmentations = split.images_root.parent / "segmentations"
        if not segmentations.is_dir():
            raise DatasetError(
                f"data.load_masks=true but {segmentations} does not exist. "
                "Extract CUB's segmentations there, or set data.load_masks=false."
            )
        return [segmentations / Path(i).with_suffix(".png") for i in split.ids]

    def readable_class_names(self, names: list[str]) -> list[str]:
        """CUB's ``001.Black_footed_Albatross`` -> ``Black footed Albatross``."""
        return [name.split(".", 1)[-1].replace("_", " ") for name in names]

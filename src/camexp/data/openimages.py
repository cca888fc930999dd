"""OpenImages30k of the WSOL field (``data=openimages``): metadata, masks and ignore masks.

There is no "official" layout to read: the field's ``metadata/OpenImages/<train|val|test>/``
(``data.metadata_root``) lists the images (ids relative to ``data.root``), their labels and,
for val and test, ``localization.txt`` lines ``path,mask_path,ignore_path`` (paths relative to
``data.mask_root``, by default ``data.root``). Batches of val/test carry ``mask`` (the union of
the instance masks, 0/255) and ``ignore`` (nonzero = left out of PxAP); their ``boxes`` are the
tight boxes of the instance masks, so the box metrics also run.
"""

from __future__ import annotations

from pathlib import Path

from camexp.data.metadata import names_from_ids, read_metadata_splits, resolve_metadata_root
from camexp.data.tables import Tables
from camexp.data.wsol import WSOLDataModule


class OpenImagesDataModule(WSOLDataModule):
    dataset_name = "OpenImages30k"
    splits_supported = ("wsol",)

    def __init__(self, root: str, num_classes: int, mask_root: str | None = None,
                 **kwargs) -> None:
        kwargs.setdefault("split", "wsol")
        super().__init__(root, num_classes, **kwargs)
        self.mask_root = mask_root

    def read_tables(self) -> Tables:
        metadata = resolve_metadata_root(self.metadata_root, "OpenImages", "data.metadata_root")
        root = Path(self.root).expanduser()
        mask_root = Path(self.mask_root).expanduser() if self.mask_root else root
        problems: list = []
        splits = read_metadata_splits(metadata, root, mask_root, problems)
        names = names_from_ids(splits, self.num_classes)
        return Tables(splits, names, f"data.num_classes (labels of {metadata})",
                      f"OpenImages30k (wsol metadata {metadata}) with images under {root}, "
                      f"masks under {mask_root}", problems=problems)

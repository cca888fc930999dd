"""data.val_per_class: the field's per-class budget of fully-annotated val images, seeded."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from camexp.core.errors import DatasetError
from camexp.data.datamodule import CUBDataModule
from camexp.data.metadata import rows_per_class
from tests.helpers.datasets import write_cub


def test_rows_per_class_exact_counts_without_replacement_and_seeded() -> None:
    labels = np.array([0] * 7 + [1] * 3 + [2] * 5 + [0] * 2)  # class 0 split in two runs
    rows, short = rows_per_class(labels, 4, seed=3)
    assert Counter(labels[rows].tolist()) == {0: 4, 1: 3, 2: 4}
    assert short == [(1, 3)]  # class 1 has 3 < 4: all kept, reported
    assert len(set(rows.tolist())) == len(rows) and list(rows) == sorted(rows)
    again, _ = rows_per_class(labels, 4, seed=3)
    assert np.array_equal(rows, again)
    draws = {tuple(rows_per_class(labels, 4, seed=s)[0].tolist()) for s in range(10)}
    assert len(draws) > 1  # the seed changes the draw
    one, _ = rows_per_class(labels, 1, seed=0)
    assert Counter(labels[one].tolist()) == {0: 1, 1: 1, 2: 1}


def _val_ids(cub: Path, **kwargs) -> list[str]:
    module = CUBDataModule(str(cub), num_classes=3, val_fraction=0.5, num_workers=0, **kwargs)
    tables = module.load_tables()
    return tables.splits["val"].ids, tables


def test_val_per_class_limits_the_val_split_only(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub", num_classes=3, per_class=12)  # 6 train/class, 3 held out
    full, tables = _val_ids(cub)
    train_full = tables.splits["train"].ids
    limited, tables = _val_ids(cub, val_per_class=2)
    assert Counter(i.split("/")[0] for i in full) == {d: 3 for d in {i.split("/")[0] for i in full}}
    per_class = Counter(i.split("/")[0] for i in limited)
    assert sorted(per_class.values()) == [2, 2, 2]
    assert set(limited) <= set(full)
    assert tables.splits["train"].ids == train_full  # the images left out of val stay out of train
    assert any("val_per_class=2" in note for note in tables.notes)
    assert _val_ids(cub, val_per_class=2)[0] == limited  # same split_seed, same images
    others = {tuple(_val_ids(cub, val_per_class=2, split_seed=s)[0]) for s in range(1, 6)}
    assert len(others | {tuple(limited)}) > 1  # another split_seed, another draw
    assert sorted(Counter(i.split("/")[0] for i in _val_ids(cub, val_per_class=9)[0]).values()) == [3, 3, 3]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_val_per_class_must_be_a_positive_integer(tmp_path: Path, bad) -> None:
    with pytest.raises(DatasetError, match="data.val_per_class=.* must be a positive integer"):
        CUBDataModule(str(tmp_path), num_classes=3, val_per_class=bad)

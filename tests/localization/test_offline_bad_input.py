"""Offline evaluation of saved maps refuses bad input with one paragraph: maps and masks stay
inside their folders, stray maps are counted, an empty map file is named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from camexp.core.errors import EvalMapsError
from camexp.localization.offline import evaluate_maps
from tests.helpers.datasets import box_metadata_with_perfect_maps, write_metadata

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(batch_size=2, num_workers=0, resize_size=(32, 32), crop_size=28, eval_size=(28, 28))


def test_extra_maps_are_counted_and_printed(tmp_path: Path) -> None:
    meta, maps = box_metadata_with_perfect_maps(tmp_path)
    np.save(maps / "a" / "stray.jpg.npy", np.zeros((4, 4)))
    np.save(maps / "other.npy", np.zeros((4, 4)))
    done = subprocess.run([sys.executable, "-m", "camexp.eval_maps", f"maps_dir={maps}",
                           f"metadata_dir={meta}", "cam_curve_interval=0.01", "output=null"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "eval_maps: 2 images: MaxBoxAcc=100.00" in done.stdout
    assert "(2 .npy file(s) under maps_dir are not in the split and were not read)" in done.stdout
    assert evaluate_maps(maps, meta, "test", cam_curve_interval=0.01)["extra_maps"] == 2


def test_eval_maps_keeps_maps_and_masks_inside_their_folders(tmp_path: Path) -> None:
    meta, maps = box_metadata_with_perfect_maps(tmp_path)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        path = meta / "test" / name
        path.write_text(path.read_text().replace("b/y.jpg", "../b/y.jpg"))
    with pytest.raises(EvalMapsError, match=r"image_ids.txt, line 2: the path '../b/y.jpg' points "
                                            r"outside the dataset folder"):
        evaluate_maps(maps, meta, "test")
    masks = write_metadata(tmp_path / "masks_meta", tmp_path / "oi", {
        "test": [("t/a.jpg", 0, [(5, 4, 15, 12)])]}, masks=True)
    (masks / "test" / "localization.txt").write_text("t/a.jpg,/etc/passwd,\n")
    with pytest.raises(EvalMapsError, match=r"localization.txt \(image 't/a.jpg'\): the path "
                                            r"'/etc/passwd' points outside"):
        evaluate_maps(maps, masks, "test", mask_root=tmp_path / "oi")


def test_eval_maps_zero_byte_map_is_one_paragraph(tmp_path: Path) -> None:
    meta, maps = box_metadata_with_perfect_maps(tmp_path)
    (maps / "b" / "y.jpg.npy").write_bytes(b"")
    with pytest.raises(EvalMapsError, match=r"image id 'b/y.jpg': cannot read .*y.jpg.npy as a numpy "
                                            r"array \(the file is empty\)"):
        evaluate_maps(maps, meta, "test")

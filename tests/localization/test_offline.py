"""``python -m camexp.eval_maps``: composed configs, hand-known results, clear input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from camexp.core.errors import EvalMapsError, MetadataError
from camexp.eval_maps import run
from camexp.localization import MapError
from camexp.localization.offline import evaluate_maps

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
REPO = CONF_DIR.parent

RING_GT = (59, 59, 141, 141)  # box of the hole contour of the ring map below


def square(x0: int, y0: int, x1: int, y1: int, size: int = 224) -> np.ndarray:
    m = np.zeros((size, size))
    m[y0:y1, x0:x1] = 1.0
    return m


def ring() -> np.ndarray:
    m = square(40, 40, 160, 160)
    m[60:140, 60:140] = 0.0
    return m


def write_box_split(root: Path) -> tuple[Path, Path]:
    """Three images: a hit, a miss, and a ring whose hole contour matches the box.

    ``good.jpg`` is 448x448 with box (100, 100, 300, 300) -> (50, 50, 150, 150) at 224, and its
    map is 1 on pixels 50..149: contour box (50, 50, 150, 150), IoU 1 at every threshold.
    """
    meta = root / "metadata" / "CUB" / "test"
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("c/good.jpg\nc/bad.jpg\nc/ring.jpg\n")
    (meta / "class_labels.txt").write_text("c/good.jpg,0\nc/bad.jpg,0\nc/ring.jpg,1\n")
    (meta / "image_sizes.txt").write_text(
        "c/good.jpg,448,448\nc/bad.jpg,224,224\nc/ring.jpg,224,224\n"
    )
    (meta / "localization.txt").write_text(
        "c/good.jpg,100,100,300,300\nc/bad.jpg,10,10,40,40\nc/ring.jpg,{},{},{},{}\n".format(
            *RING_GT
        )
    )
    maps = root / "maps"
    (maps / "c").mkdir(parents=True)
    np.save(maps / "c" / "good.jpg.npy", square(50, 50, 150, 150))
    np.save(maps / "c" / "bad.jpg.npy", square(150, 150, 200, 200))
    np.save(maps / "c" / "ring.jpg.npy", ring())
    return maps, root / "metadata" / "CUB"


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="eval_maps", overrides=overrides)


def test_run_with_composed_config_writes_json(tmp_path: Path) -> None:
    maps, metadata = write_box_split(tmp_path)
    out = tmp_path / "result" / "eval.json"
    cfg = compose_cfg([f"maps_dir={maps}", f"metadata_dir={metadata}", f"output={out}"])
    result = run(cfg)
    saved = json.loads(out.read_text())
    assert result.pop("output") == str(out)
    assert saved == result
    assert saved["num_images"] == 3
    assert saved["MaxBoxAcc"] == pytest.approx(100 / 3)  # the ring fails V1 (IoU 0.47)
    assert saved["MaxBoxAccV2"] == pytest.approx(200 / 3)
    for iou in (30, 50, 70):
        assert saved[f"MaxBoxAccV2_IoU{iou}"] == pytest.approx(200 / 3)
        assert saved[f"MaxBoxAccV2_best_tau_IoU{iou}"] == 0.0
    assert saved["MaxBoxAcc_best_tau"] == 0.0
    assert saved["image_size"] == [224, 224]
    assert saved["iou_thresholds"] == [30.0, 50.0, 70.0]
    assert "PxAP" not in saved


def test_options_multi_contour_and_thresholds(tmp_path: Path) -> None:
    maps, metadata = write_box_split(tmp_path)
    single = evaluate_maps(maps, metadata, "test", multi_contour=False, cam_curve_interval=0.01)
    # largest contour only: the ring's outer box (IoU 0.47) passes at 30 but not at 50 or 70
    assert single["MaxBoxAccV2_IoU30"] == pytest.approx(200 / 3)
    assert single["MaxBoxAccV2_IoU50"] == single["MaxBoxAccV2_IoU70"] == pytest.approx(100 / 3)
    assert single["MaxBoxAccV2"] == pytest.approx(400 / 9)
    custom = evaluate_maps(maps, metadata / "test", "test", iou_thresholds=[50, 90], workers=2)
    assert set(k for k in custom if k.startswith("MaxBoxAccV2")) == {
        "MaxBoxAccV2",
        "MaxBoxAccV2_IoU50",
        "MaxBoxAccV2_IoU90",
        "MaxBoxAccV2_best_tau_IoU50",
        "MaxBoxAccV2_best_tau_IoU90",
    }
    # maps of another size are resized (bicubic) and normalized: a small map still works
    np.save(maps / "c" / "bad.jpg.npy", cv2.resize(square(150, 150, 200, 200), (56, 56)))
    assert evaluate_maps(maps, metadata, "test", image_size=[112, 112])["num_images"] == 3


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (None, EvalMapsError, r"image id 'c/bad.jpg': score map .*bad.jpg.npy not found"),
        (np.full((8, 8), np.nan), MapError, r"image id 'c/bad.jpg' \(file .*bad.jpg.npy\).*NaN"),
        (np.full((8, 8), 1.5), MapError, r"'c/bad.jpg'.*\[0, 1\].*normalize"),
        (np.zeros((2, 8, 8)), MapError, r"'c/bad.jpg'.*2-D"),
    ],
)
def test_bad_maps_name_the_image(tmp_path: Path, content, error, match: str) -> None:
    maps, metadata = write_box_split(tmp_path)
    target = maps / "c" / "bad.jpg.npy"
    target.unlink()
    if content is not None:
        np.save(target, content)
    with pytest.raises(error, match=match):
        evaluate_maps(maps, metadata, "test")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("c/bad.jpg,10,10,300,40", r"localization.txt:2: .*outside the image"),
        ("c/bad.jpg,50,10,40,40", r"localization.txt:2: .*x1 < x0"),
    ],
)
def test_bad_boxes_name_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    maps, metadata = write_box_split(tmp_path)
    loc = metadata / "test" / "localization.txt"
    lines = loc.read_text().splitlines()
    lines[1] = line
    loc.write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadataError, match=match):
        evaluate_maps(maps, metadata, "test")


def write_mask_split(root: Path) -> tuple[Path, Path, Path]:
    """Two OpenImages-style images; maps equal to the masks except for an ignored blob."""
    meta = root / "metadata" / "OpenImages" / "val"
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("v/a.jpg\nv/b.jpg\n")
    (meta / "class_labels.txt").write_text("v/a.jpg,0\nv/b.jpg,1\n")
    (meta / "localization.txt").write_text(
        "v/a.jpg,v/a_m1.png,v/a_ignore.png\nv/a.jpg,v/a_m2.png,\nv/b.jpg,v/b_m1.png,\n"
    )
    masks = root / "masks"
    (masks / "v").mkdir(parents=True)
    m1, m2, mb = square(10, 10, 60, 60), square(100, 100, 150, 150), square(30, 120, 90, 200)
    ignore = square(150, 0, 224, 60)
    for name, arr in {"a_m1": m1, "a_m2": m2, "a_ignore": ignore, "b_m1": mb}.items():
        cv2.imwrite(str(masks / "v" / f"{name}.png"), (arr * 255).astype(np.uint8))
    maps = root / "maps"
    (maps / "v").mkdir(parents=True)
    np.save(maps / "v" / "a.jpg.npy", np.maximum(m1 + m2, ignore))  # confident on ignored pixels
    np.save(maps / "v" / "b.jpg.npy", mb)
    return maps, root / "metadata" / "OpenImages", masks


def test_pxap_from_mask_metadata(tmp_path: Path) -> None:
    maps, metadata, masks = write_mask_split(tmp_path)
    cfg = compose_cfg(
        [
            f"maps_dir={maps}",
            f"metadata_dir={metadata}",
            "split=val",
            f"mask_root={masks}",
            "output=null",
        ]
    )
    result = run(cfg)
    assert result["PxAP"] == pytest.approx(100.0)
    assert "MaxBoxAcc" not in result and result["num_images"] == 2
    # without mask_root the run stops with a clear message
    with pytest.raises(EvalMapsError, match="mask_root"):
        evaluate_maps(maps, metadata, "val")
    # the ignore mask matters: without it the confident blob is a false positive
    loc = metadata / "val" / "localization.txt"
    loc.write_text(loc.read_text().replace("v/a_ignore.png", ""))
    assert evaluate_maps(maps, metadata, "val", mask_root=masks)["PxAP"] < 90.0


def test_missing_mandatory_values(tmp_path: Path) -> None:
    with pytest.raises(EvalMapsError, match="maps_dir is not set"):
        run(compose_cfg([f"metadata_dir={tmp_path}"]))


@pytest.mark.slow
def test_command_line_exit_codes(tmp_path: Path) -> None:
    maps, metadata = write_box_split(tmp_path)
    cmd = [sys.executable, "-m", "camexp.eval_maps", f"maps_dir={maps}", f"metadata_dir={metadata}"]
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    written = list((tmp_path / "outputs" / "eval_maps").rglob("eval_maps.json"))
    assert len(written) == 1
    assert json.loads(written[0].read_text())["MaxBoxAccV2"] == pytest.approx(200 / 3)

    np.save(maps / "c" / "ring.jpg.npy", np.full((4, 4), 2.0))
    bad = subprocess.run(
        cmd + ["output=null"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith("eval_maps: error: image id 'c/ring.jpg'")
    assert len(bad.stderr.strip().splitlines()) == 1

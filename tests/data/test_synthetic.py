"""Tests for the embedded synthetic dataset: CUB layout, exact boxes, determinism, caching."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import Image

from camexp.data.synthetic import (
    CLASS_CATALOGUE,
    CUB_DIRNAME,
    FORMAT_VERSION,
    SyntheticSpec,
    class_dirs,
    classes,
    ensure_synthetic_cub,
    generate_sample,
    spec_hash,
    write_synthetic_cub,
    writing,
)
from camexp.data.synthetic.__main__ import main as synthetic_main

TINY = SyntheticSpec(
    num_classes=10, train_per_class=3, test_per_class=2, image_size=64, two_object_prob=0.4
)
CUB_FILES = (
    "classes.txt",
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "synthetic.json",
)
BOX_LINE = re.compile(r"^(\d+) (\d+\.0) (\d+\.0) (\d+\.0) (\d+\.0)$")


def _read_pairs(path: Path) -> list[tuple[int, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        key, value = line.split(" ", 1)
        pairs.append((int(key), value))
    return pairs


def _read_boxes(cub: Path) -> dict[int, list[tuple[int, int, int, int]]]:
    boxes: dict[int, list[tuple[int, int, int, int]]] = {}
    for line in (cub / "bounding_boxes.txt").read_text().splitlines():
        match = BOX_LINE.match(line)
        assert match, f"bad box line {line!r}"
        image_id, *xywh = match.groups()
        boxes.setdefault(int(image_id), []).append(tuple(int(float(v)) for v in xywh))
    return boxes


def _mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_cub(tmp_path_factory.mktemp("a"), TINY)


def test_catalogue_is_valid() -> None:
    assert len(CLASS_CATALOGUE) >= 10
    assert len({c.name for c in CLASS_CATALOGUE}) == len(CLASS_CATALOGUE)
    # The default ten classes differ in both shape and texture.
    first = CLASS_CATALOGUE[:10]
    assert len({c.shape for c in first}) == 10 and len({c.texture for c in first}) == 10
    # Colour alone does not decide: every palette colour is shared by several classes.
    uses = np.bincount([i for c in first for i in c.palette])
    assert (uses[uses > 0] >= 2).all()
    for ops in classes.SHAPES.values():  # shapes fit their unit circle, so rotation is safe
        for poly, value in ops:
            if value:  # holes may reach outside; what is filled may not
                assert np.linalg.norm(poly, axis=1).max() <= 1.0 + 1e-9


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_layout(cub: Path) -> None:
    assert cub.name == CUB_DIRNAME
    for name in CUB_FILES:
        assert (cub / name).is_file(), name
    assert not (cub / "parts").exists()

    classes = _read_pairs(cub / "classes.txt")
    assert [i for i, _ in classes] == list(range(1, TINY.num_classes + 1))
    assert [d for _, d in classes] == class_dirs(TINY)
    for class_id, class_dir in classes:
        assert re.fullmatch(rf"{class_id:03d}\.[A-Z][a-z]+_[A-Z][a-z]+", class_dir), class_dir

    images = _read_pairs(cub / "images.txt")
    labels = dict(_read_pairs(cub / "image_class_labels.txt"))
    split = dict(_read_pairs(cub / "train_test_split.txt"))
    ids = [i for i, _ in images]
    assert ids == list(range(1, TINY.num_images + 1))
    assert sorted(labels) == ids and sorted(split) == ids
    class_dir_of = dict(classes)

    per_class: dict[int, list[int]] = {}
    for image_id, rel in images:
        class_id = int(labels[image_id])
        assert rel.split("/")[0] == class_dir_of[class_id]
        assert rel.endswith(".jpg")
        per_class.setdefault(class_id, []).append(int(split[image_id]))

        path = cub / "images" / rel
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert im.size == (TINY.image_size, TINY.image_size)
        decoded = torchvision.io.decode_jpeg(torchvision.io.read_file(str(path)))
        assert decoded.shape == (3, TINY.image_size, TINY.image_size)
        assert decoded.dtype == torch.uint8

        seg = cub / "segmentations" / rel.replace(".jpg", ".png")
        with Image.open(seg) as im:
            assert im.format == "PNG" and im.mode == "L"
            assert im.size == (TINY.image_size, TINY.image_size)
            assert set(np.unique(np.asarray(im)).tolist()) == {0, 255}

    assert sorted(per_class) == list(range(1, TINY.num_classes + 1))
    for flags in per_class.values():
        assert flags.count(1) == TINY.train_per_class
        assert flags.count(0) == TINY.test_per_class

    meta = json.loads((cub / "synthetic.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["spec"] == TINY.to_dict()
    assert [c["class_dir"] for c in meta["classes"]] == class_dirs(TINY)


def test_boxes_are_exact_mask_boxes(cub: Path) -> None:
    boxes = _read_boxes(cub)
    images = dict(_read_pairs(cub / "images.txt"))
    assert sorted(boxes) == sorted(images)
    n_two = 0
    for image_id, rel in images.items():
        mask = np.asarray(Image.open(cub / "segmentations" / rel.replace(".jpg", ".png"))) > 0
        own = boxes[image_id]
        assert 1 <= len(own) <= 2
        if len(own) == 1:
            assert own[0] == _mask_bbox(mask)
            continue
        n_two += 1
        x0 = min(x for x, _, _, _ in own)
        y0 = min(y for _, y, _, _ in own)
        x1 = max(x + w for x, _, w, _ in own)
        y1 = max(y + h for _, y, _, h in own)
        assert (x0, y0, x1 - x0, y1 - y0) == _mask_bbox(mask)
        for x, y, w, h in own:  # tight: mask pixels touch all four edges of every box
            region = mask[y : y + h, x : x + w]
            assert region[0].any() and region[-1].any()
            assert region[:, 0].any() and region[:, -1].any()
    assert n_two > 0, "expected some two-object images"
    assert n_two < len(images)


def test_generate_sample_ground_truth() -> None:
    for index in range(TINY.num_images):
        sample = generate_sample(TINY, index)
        assert sample.image.shape == (TINY.image_size, TINY.image_size, 3)
        assert sample.image.dtype == np.uint8
        assert sample.class_index == index // TINY.images_per_class
        assert len(sample.masks) == len(sample.boxes)
        for mask, box in zip(sample.masks, sample.boxes, strict=True):
            assert box == _mask_bbox(mask)
        if len(sample.masks) == 2:
            assert not (sample.masks[0] & sample.masks[1]).any()  # visible parts are disjoint
    with pytest.raises(ValueError, match="image_index"):
        generate_sample(TINY, TINY.num_images)


def test_deterministic_and_seeded(cub: Path, tmp_path: Path) -> None:
    again = write_synthetic_cub(tmp_path / "b", TINY)
    first, second = _all_files(cub), _all_files(again)
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first), "same spec must give byte-identical files"

    # Order-independent: one image drawn alone equals the same image drawn within the full pass.
    alone = generate_sample(TINY, 17)
    assert np.array_equal(alone.image, generate_sample(TINY, 17).image)

    other = write_synthetic_cub(tmp_path / "c", SyntheticSpec(**{**TINY.to_dict(), "seed": 1}))
    third = _all_files(other)
    jpgs = [k for k in first if k.endswith(".jpg")]
    assert sorted(jpgs) == sorted(k for k in third if k.endswith(".jpg"))
    assert all(first[k] != third[k] for k in jpgs), "a different seed must change every image"


def test_write_refuses_non_empty(cub: Path) -> None:
    with pytest.raises(FileExistsError):
        write_synthetic_cub(cub.parent, TINY)


def test_ensure_writes_once_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_write = writing.write_synthetic_cub

    def counting_write(root: Path, spec: SyntheticSpec | None = None) -> Path:
        calls.append(root)
        return real_write(root, spec)

    monkeypatch.setattr(writing, "write_synthetic_cub", counting_write)
    first = ensure_synthetic_cub(tmp_path, TINY)
    assert first == tmp_path / f"synthetic-{spec_hash(TINY)}" / CUB_DIRNAME
    assert re.fullmatch(r"synthetic-[0-9a-f]{12}", first.parent.name)
    assert (first / "images.txt").is_file()
    stamp = (first / "images.txt").stat().st_mtime_ns

    second = ensure_synthetic_cub(tmp_path, TINY)
    assert second == first and len(calls) == 1
    assert (first / "images.txt").stat().st_mtime_ns == stamp
    # Only the finished folder is left behind (the temporary one was renamed into place).
    assert [p.name for p in tmp_path.iterdir()] == [first.parent.name]

    other = ensure_synthetic_cub(tmp_path, SyntheticSpec(**{**TINY.to_dict(), "seed": 3}))
    assert other != first and len(calls) == 2


def test_ensure_ignores_crashed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = spec_hash(TINY)
    # A leftover from a write that crashed earlier: partial files in a temporary sibling.
    leftover = tmp_path / f".synthetic-{digest}.tmp-crashed" / CUB_DIRNAME
    leftover.mkdir(parents=True)
    (leftover / "images.txt").write_text("1 001.Disc_Striped/Disc_Striped_0001.jpg\n")

    # A write that crashes now leaves no dataset and no temporary folder of its own.
    def crashing_write(root: Path, spec: SyntheticSpec | None = None) -> Path:
        (Path(root) / CUB_DIRNAME / "images").mkdir(parents=True)
        (Path(root) / CUB_DIRNAME / "images.txt").write_text("partial\n")
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(writing, "write_synthetic_cub", crashing_write)
        with pytest.raises(RuntimeError, match="simulated crash"):
            ensure_synthetic_cub(tmp_path, TINY)
    assert not (tmp_path / f"synthetic-{digest}").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [leftover.parent.name]

    cub = ensure_synthetic_cub(tmp_path, TINY)
    assert cub == tmp_path / f"synthetic-{digest}" / CUB_DIRNAME
    assert len((cub / "images.txt").read_text().splitlines()) == TINY.num_images
    assert (cub / "synthetic.json").is_file()


def test_ensure_rebuilds_folder_without_valid_metadata(tmp_path: Path) -> None:
    broken = tmp_path / f"synthetic-{spec_hash(TINY)}" / CUB_DIRNAME
    broken.mkdir(parents=True)
    (broken / "images.txt").write_text("junk\n")
    cub = ensure_synthetic_cub(tmp_path, TINY)
    assert cub == broken
    assert len((cub / "images.txt").read_text().splitlines()) == TINY.num_images


def test_spec_hash() -> None:
    assert spec_hash(TINY) == spec_hash(SyntheticSpec(**TINY.to_dict()))
    assert re.fullmatch(r"[0-9a-f]{12}", spec_hash(TINY))
    assert spec_hash(TINY) != spec_hash(SyntheticSpec(**{**TINY.to_dict(), "seed": 1}))
    # Equal values of different numeric types name the same folder.
    assert spec_hash(SyntheticSpec(two_object_prob=1)) == spec_hash(
        SyntheticSpec(two_object_prob=1.0)
    )
    assert spec_hash(SyntheticSpec(seed=np.int64(4))) == spec_hash(SyntheticSpec(seed=4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": len(CLASS_CATALOGUE) + 1}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"train_per_class": 0}, "train_per_class"),
        ({"test_per_class": 0}, "test_per_class"),
        ({"image_size": 16}, "image_size"),
        ({"two_object_prob": -0.1}, "two_object_prob"),
        ({"two_object_prob": 1.5}, "two_object_prob"),
        ({"two_object_prob": "0.5"}, "two_object_prob"),
        ({"min_object_frac": 0.0}, "min_object_frac"),
        ({"min_object_frac": 0.7, "max_object_frac": 0.6}, "min_object_frac"),
        ({"max_object_frac": 1.2}, "max_object_frac"),
        ({"max_object_frac": float("nan")}, "max_object_frac"),
        ({"image_size": 32, "min_object_frac": 0.2}, "too small"),
        ({"seed": -1}, "seed"),
        ({"jpeg_quality": 100}, "jpeg_quality"),
    ],
)
def test_spec_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticSpec(**kwargs)


def test_spec_defaults_and_frozen() -> None:
    spec = SyntheticSpec()
    assert (spec.num_classes, spec.train_per_class, spec.test_per_class) == (10, 60, 20)
    assert (spec.image_size, spec.two_object_prob, spec.seed) == (128, 0.25, 0)
    assert spec.num_images == 800
    with pytest.raises(AttributeError):
        spec.seed = 1  # type: ignore[misc]


def test_main_writes_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--out",
        str(tmp_path),
        "--num-classes",
        "2",
        "--train-per-class",
        "2",
        "--test-per-class",
        "1",
        "--image-size",
        "48",
        "--seed",
        "5",
    ]
    assert synthetic_main(argv) == 0
    cub = tmp_path / CUB_DIRNAME
    assert len((cub / "images.txt").read_text().splitlines()) == 6
    assert json.loads((cub / "synthetic.json").read_text())["spec"]["seed"] == 5
    assert "wrote 6 images" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # refuses to overwrite
        synthetic_main(argv)
    with pytest.raises(SystemExit):  # invalid spec is a usage error
        synthetic_main(["--out", str(tmp_path / "x"), "--image-size", "8"])

"""The localization callback, the torchmetrics class and eval_maps count boxes with one
accumulator: on the same maps and boxes they give the same V1, V2 and best thresholds."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from camexp.callbacks.localization import CAMLocalization
from camexp.localization import MaxBoxAccV2
from camexp.localization.offline import evaluate_maps
from camexp.localization.random_maps import random_boxes, random_map

SIZE = 56  # evaluation size; the maps are 14x14 and get resized (bicubic) to it
INTERVAL = 0.01


def _maps_and_boxes(count: int) -> tuple[torch.Tensor, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    # float32 values, as the callback casts maps to float32: all three see the same numbers
    maps = torch.tensor(np.stack([random_map(rng, 14) for _ in range(count)])).float()
    return maps, [random_boxes(rng, SIZE) for _ in range(count)]


def _padded(boxes: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    padded = torch.zeros(len(boxes), max(len(b) for b in boxes), 4, dtype=torch.long)
    for index, box in enumerate(boxes):
        padded[index, : len(box)] = torch.from_numpy(box)
    return padded, torch.tensor([len(b) for b in boxes])


def _callback_results(maps: torch.Tensor, boxes: list[np.ndarray], out: Path) -> dict:
    """Feed the maps to the callback's test hooks as a model's class maps, 4 per batch."""
    logged: dict[str, float] = {}
    datamodule = SimpleNamespace(eval_transform=SimpleNamespace(size=(SIZE, SIZE)),
                                 load_masks=False)
    trainer = SimpleNamespace(datamodule=datamodule, is_global_zero=True, sanity_checking=False,
                              loggers=[])
    callback = CAMLocalization(str(out), cam_curve_interval=INTERVAL, center_baseline=False)
    for start in range(0, len(maps), 4):
        batch_maps = maps[start : start + 4]
        batch_boxes, num_boxes = _padded(boxes[start : start + 4])
        labels = torch.zeros(len(batch_maps), dtype=torch.long)
        module = SimpleNamespace(
            device=torch.device("cpu"), log_dict=logged.update,
            # every class's map is the sample's map
            class_maps=lambda outputs, classes, m=batch_maps: m[:, None].expand(
                -1, classes.shape[1], -1, -1),
        )
        if start == 0:
            callback.on_test_epoch_start(trainer, module)
        batch = {"input": torch.zeros(len(batch_maps), 3, SIZE, SIZE), "label": labels,
                 "boxes": batch_boxes, "num_boxes": num_boxes}
        outputs = {"logits": torch.eye(len(batch_maps), 6)}
        callback.on_test_batch_end(trainer, module, outputs, batch, start // 4)
    callback.on_test_epoch_end(trainer, module)
    return callback.results["test"]


def _eval_maps_results(maps: torch.Tensor, boxes: list[np.ndarray], root: Path) -> dict:
    """The same maps saved as .npy files with a metadata split whose images are SIZE pixels
    (so the boxes are not rescaled)."""
    split = root / "metadata" / "test"
    split.mkdir(parents=True)
    ids = [f"c/{index}.jpg" for index in range(len(maps))]
    for image_id, score_map in zip(ids, maps, strict=True):
        (root / "maps" / "c").mkdir(parents=True, exist_ok=True)
        np.save(root / "maps" / f"{image_id}.npy", score_map.double().numpy())
    (split / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (split / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (split / "image_sizes.txt").write_text("".join(f"{i},{SIZE},{SIZE}\n" for i in ids))
    (split / "localization.txt").write_text("".join(
        f"{i},{x0},{y0},{x1},{y1}\n" for i, b in zip(ids, boxes, strict=True)
        for x0, y0, x1, y1 in b.tolist()))
    return evaluate_maps(root / "maps", root / "metadata", "test", cam_curve_interval=INTERVAL,
                         image_size=SIZE)


def test_callback_metric_and_eval_maps_agree(tmp_path: Path) -> None:
    maps, boxes = _maps_and_boxes(12)
    metric = MaxBoxAccV2(image_size=SIZE, cam_curve_interval=INTERVAL, report_v1=True)
    metric.update(maps, *_padded(boxes))
    from_metric = {key: value.item() for key, value in metric.compute().items()}
    from_callback = _callback_results(maps, boxes, tmp_path / "callback")
    from_eval_maps = _eval_maps_results(maps, boxes, tmp_path / "offline")
    keys = ["MaxBoxAcc", "MaxBoxAcc_best_tau", "MaxBoxAccV2", "MaxBoxAccV2_IoU30",
            "MaxBoxAccV2_IoU50", "MaxBoxAccV2_IoU70", "MaxBoxAccV2_best_tau_IoU30",
            "MaxBoxAccV2_best_tau_IoU50", "MaxBoxAccV2_best_tau_IoU70"]
    assert sorted(from_metric) == sorted(keys)
    # the metric's values are float32 tensors: compare in float32
    for key in keys:
        assert np.float32(from_callback[key]) == np.float32(from_metric[key]), key
        assert np.float32(from_eval_maps[key]) == np.float32(from_metric[key]), key
    # not a trivial split: V1 differs from V2 at IoU 50 (several blobs), best thresholds differ
    assert from_metric["MaxBoxAcc"] != from_metric["MaxBoxAccV2_IoU50"]
    assert 0 < from_metric["MaxBoxAccV2_IoU70"] < from_metric["MaxBoxAccV2_IoU30"] < 100
    assert from_metric["MaxBoxAccV2_best_tau_IoU70"] > 0
    # the callback's curve file holds the metric's curves
    with (tmp_path / "callback" / "test_box_accuracy_curve.csv").open() as handle:
        rows = list(csv.reader(handle))
    curve = metric.curve()
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], curve["accuracy_v1"], atol=1e-4)
    np.testing.assert_allclose([float(r[3]) for r in rows[1:]], curve["accuracy"][1], atol=1e-4)

"""torchmetrics classes: hand cases, state summing, skip mask, curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camexp.localization import (
    BoxError,
    MapError,
    MaxBoxAcc,
    MaxBoxAccV2,
    PaperLocalization,
    PxAP,
    box_sweep,
    cam_thresholds,
    prepare_map,
)
from camexp.localization.random_maps import random_boxes, random_map


def square_map(size: int, x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    """A map that is 1 on pixels [y0, y1) x [x0, x1) and 0 elsewhere."""
    m = torch.zeros(size, size)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_maxboxacc_hand_case() -> None:
    # 32x32 maps evaluated at 32x32 (no resizing): sample 0 hits its box, sample 1 misses.
    maps = torch.stack([square_map(32, 4, 4, 12, 12), square_map(32, 20, 20, 28, 28)])
    boxes = torch.tensor([[[4, 4, 11, 11]], [[2, 2, 9, 9]]])
    num = torch.tensor([1, 1])
    v1 = MaxBoxAcc(image_size=32)
    v2 = MaxBoxAccV2(image_size=32)
    v1.update(maps, boxes, num)
    v2.update(maps, boxes, num)
    out1 = v1.compute()
    out2 = v2.compute()
    assert set(out1) == {"MaxBoxAcc", "MaxBoxAcc_best_tau"}
    assert set(out2) == {
        "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50", "MaxBoxAccV2_IoU70",
        "MaxBoxAccV2_best_tau_IoU30", "MaxBoxAccV2_best_tau_IoU50", "MaxBoxAccV2_best_tau_IoU70",
    }  # fmt: skip
    # predicted box (4, 4, 12, 12) vs gt (4, 4, 11, 11): IoU 64/81 -> correct at 30/50/70
    assert out1["MaxBoxAcc"].item() == pytest.approx(50.0)
    assert out2["MaxBoxAccV2"].item() == pytest.approx(50.0)
    assert out2["MaxBoxAccV2_best_tau_IoU50"].item() == 0.0
    curve = v2.curve()
    assert curve["accuracy"].shape == (3, 1000)
    assert np.allclose(curve["accuracy"], 50.0)
    assert curve["num_images"] == 2 and curve["iou_thresholds"] == [30.0, 50.0, 70.0]


def test_metric_matches_box_sweep_and_resizes() -> None:
    rng = np.random.default_rng(0)
    raw = [rng.normal(size=(14, 14)) for _ in range(5)]
    gts = [random_boxes(rng, 224) for _ in range(5)]
    k = max(len(g) for g in gts)
    boxes = torch.zeros(5, k, 4, dtype=torch.long)
    for i, g in enumerate(gts):
        boxes[i, : len(g)] = torch.from_numpy(g)
    num = torch.tensor([len(g) for g in gts])
    metric = MaxBoxAccV2()
    metric.update(torch.tensor(np.stack(raw)), boxes, num)
    taus = cam_thresholds()
    expected = sum(
        box_sweep(prepare_map(r, 224), g, taus).multi.astype(int)
        for r, g in zip(raw, gts, strict=True)
    )
    assert np.array_equal(metric.num_correct.numpy(), expected)
    assert int(metric.num_images) == 5


def _batch(rng: np.random.Generator, n: int, size: int = 48):
    maps = torch.tensor(np.stack([random_map(rng, size) for _ in range(n)]))
    boxes = torch.zeros(n, 3, 4, dtype=torch.long)
    num = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        g = random_boxes(rng, size)
        boxes[i, : len(g)] = torch.from_numpy(g)
        num[i] = len(g)
    return maps, boxes, num


@pytest.mark.parametrize("cls", [MaxBoxAcc, MaxBoxAccV2])
def test_states_of_two_halves_sum_to_the_whole(cls) -> None:
    maps, boxes, num = _batch(np.random.default_rng(1), 10)
    whole = cls(image_size=48, cam_curve_interval=0.01)
    first = cls(image_size=48, cam_curve_interval=0.01)
    second = cls(image_size=48, cam_curve_interval=0.01)
    whole.update(maps, boxes, num)
    first.update(maps[:4], boxes[:4], num[:4])
    second.update(maps[4:], boxes[4:], num[4:])
    assert torch.equal(first.num_correct + second.num_correct, whole.num_correct)
    assert int(first.num_images + second.num_images) == 10
    first.merge_state(second)
    for key, value in whole.compute().items():
        assert first.compute()[key].item() == value.item()


def test_skip_mask() -> None:
    maps, boxes, num = _batch(np.random.default_rng(2), 6)
    masked = MaxBoxAccV2(image_size=48, cam_curve_interval=0.01)
    keep = torch.tensor([True, False, True, True, False, True])
    masked.update(maps, boxes, num, mask=keep)
    subset = MaxBoxAccV2(image_size=48, cam_curve_interval=0.01)
    subset.update(maps[keep], boxes[keep], num[keep])
    assert torch.equal(masked.num_correct, subset.num_correct)
    assert int(masked.num_images) == 4


def test_update_errors_are_clear() -> None:
    metric = MaxBoxAccV2(image_size=32)
    maps = torch.rand(1, 8, 8)
    with pytest.raises(BoxError, match="x1 < x0"):
        metric.update(maps, torch.tensor([[[10, 10, 5, 20]]]), torch.tensor([1]))
    with pytest.raises(BoxError, match="no ground-truth box"):
        metric.update(maps, torch.tensor([[[1, 1, 5, 5]]]), torch.tensor([0]))
    with pytest.raises(BoxError, match="outside"):
        metric.update(maps, torch.tensor([[[1, 1, 40, 5]]]), torch.tensor([1]))
    with pytest.raises(MapError, match="NaN"):
        metric.update(
            torch.full((1, 8, 8), float("nan")), torch.tensor([[[1, 1, 5, 5]]]), torch.tensor([1])
        )
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        metric.update(torch.rand(1, 1, 8, 8), torch.tensor([[[1, 1, 5, 5]]]), torch.tensor([1]))


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_compute_before_update_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no image"):
        MaxBoxAcc().compute()


def test_paper_localization_hand_case() -> None:
    size = 32
    hit = square_map(size, 4, 4, 12, 12)
    miss = square_map(size, 20, 20, 28, 28)
    gt_maps = torch.stack([hit, hit, miss, hit])
    boxes = torch.tensor([[[4, 4, 11, 11]]] * 4)
    num = torch.ones(4, dtype=torch.long)
    labels = torch.tensor([3, 3, 3, 3])
    topk = torch.tensor(
        [
            [3, 0, 1, 2, 4],  # top-1 right, box right
            [0, 1, 3, 2, 4],  # label at rank 2, box right -> top-5 only
            [3, 0, 1, 2, 4],  # top-1 right but box wrong
            [0, 1, 2, 4, 5],  # label not in top-5, box right -> GT-known only
        ]
    )
    metric = PaperLocalization(image_size=size)
    metric.update(gt_maps, topk, labels, boxes, num)
    out = metric.compute()
    assert out["loc_top1_err"].item() == pytest.approx(75.0)
    assert out["loc_top5_err"].item() == pytest.approx(50.0)
    assert out["loc_gt_known"].item() == pytest.approx(75.0)
    # explicit top-k maps: the label's rank uses its own map
    topk_maps = gt_maps[:, None].repeat(1, 5, 1, 1)
    topk_maps[1, 2] = miss  # the rank-2 map of sample 1 now misses
    other = PaperLocalization(image_size=size)
    other.update(gt_maps, topk, labels, boxes, num, topk_maps=topk_maps)
    assert other.compute()["loc_top5_err"].item() == pytest.approx(75.0)
    # states sum across halves
    half_a, half_b = PaperLocalization(image_size=size), PaperLocalization(image_size=size)
    half_a.update(gt_maps[:2], topk[:2], labels[:2], boxes[:2], num[:2])
    half_b.update(gt_maps[2:], topk[2:], labels[2:], boxes[2:], num[2:])
    half_a.merge_state(half_b)
    assert {k: v.item() for k, v in half_a.compute().items()} == {
        k: v.item() for k, v in out.items()
    }


def test_pxap_metric_hand_case_and_sum() -> None:
    maps = torch.tensor([[[0.9, 0.6, 0.3, 0.1]]], dtype=torch.float64)
    fg = torch.tensor([[[True, False, True, False]]])
    metric = PxAP(image_size=(1, 4))
    metric.update(maps, fg)
    # thresholds from the top: P/R = (1, 1/2), (1/2, 1/2), (2/3, 1), (1/2, 1)
    assert metric.compute()["PxAP"].item() == pytest.approx(100 * (0.5 * 1 + 0.5 * 2 / 3))
    assert metric.positive_hist.shape == (1002,)
    curve = metric.curve()
    assert curve["precision"].shape == curve["recall"].shape == (1002,)
    # ignoring a confident false positive raises precision
    ignore = torch.tensor([[[False, True, False, False]]])
    with_ignore = PxAP(image_size=(1, 4))
    with_ignore.update(maps, fg, ignore_masks=ignore)
    assert with_ignore.compute()["PxAP"].item() == pytest.approx(100.0)
    # two halves sum to the whole
    both = PxAP(image_size=(1, 4))
    both.update(torch.cat([maps, maps]), torch.cat([fg, fg]))
    one, two = PxAP(image_size=(1, 4)), PxAP(image_size=(1, 4))
    one.update(maps, fg)
    two.update(maps, fg)
    assert torch.equal(one.positive_hist + two.positive_hist, both.positive_hist)
    assert torch.equal(one.negative_hist + two.negative_hist, both.negative_hist)


def test_pxap_metric_resizes_masks_nearest() -> None:
    maps = torch.rand(2, 7, 7)
    fg = torch.zeros(2, 8, 8, dtype=torch.bool)
    fg[:, 2:6, 2:6] = True
    metric = PxAP(image_size=16)
    metric.update(maps, fg, mask=torch.tensor([True, False]))
    assert int(metric.positive_hist.sum()) == 64  # 4x4 -> 8x8 pixels, one sample
    assert int(metric.negative_hist.sum()) == 256 - 64


def test_v2_reports_v1_from_its_own_sweep_exactly_as_maxboxacc() -> None:
    maps, boxes, num = _batch(np.random.default_rng(3), 12)
    v1 = MaxBoxAcc(image_size=48, cam_curve_interval=0.01)
    v2 = MaxBoxAccV2(image_size=48, cam_curve_interval=0.01, report_v1=True)
    plain = MaxBoxAccV2(image_size=48, cam_curve_interval=0.01)
    for metric in (v1, v2, plain):
        metric.update(maps, boxes, num)
    both, alone, separate = v2.compute(), plain.compute(), v1.compute()
    assert {k: both[k].item() for k in separate} == {k: v.item() for k, v in separate.items()}
    assert {k: both[k].item() for k in alone} == {k: v.item() for k, v in alone.items()}
    assert set(both) == set(alone) | set(separate)
    np.testing.assert_array_equal(v2.curve()["accuracy_v1"], v1.curve()["accuracy"][0])
    # without IoU 50 among V2's thresholds the sweep adds it for V1: same V1, same V2
    without_50 = MaxBoxAccV2((30, 70), image_size=48, cam_curve_interval=0.01, report_v1=True)
    without_50.update(maps, boxes, num)
    out = without_50.compute()
    assert {k: out[k].item() for k in separate} == {k: v.item() for k, v in separate.items()}
    for key in ("MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU70", "MaxBoxAccV2_best_tau_IoU70"):
        assert out[key].item() == alone[key].item()
    assert "MaxBoxAccV2_IoU50" not in out and without_50.num_correct.shape == (2, 100)

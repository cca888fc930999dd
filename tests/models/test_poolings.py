"""The poolings of the CAM head (model.pool): scores against their formulas on hand-made maps,
and the class activation map each defines."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camexp.models import CAMNet, make_pool
from camexp.models.layers import LogSumExpPool, WildcatPool, positions

# one class, a 2 x 3 score map: mean 2.5, max 6
MAP = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 0.0, 5.0 + 1.0]]]])


def test_lse_tends_to_the_mean_as_r_goes_to_zero_and_to_the_max_as_r_grows() -> None:
    mean, peak = MAP.mean().item(), MAP.max().item()
    near_zero = LogSumExpPool(r=1e-6).reduce(MAP).item()
    assert near_zero == pytest.approx(mean, abs=1e-4)
    gaps = [peak - LogSumExpPool(r=r).reduce(MAP).item() for r in (1.0, 10.0, 100.0, 1000.0)]
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))  # closer to the max as r grows
    # the formula at r = 1: m + log(mean(exp(x - m))), by hand
    expected = 6 + math.log(sum(math.exp(v - 6) for v in (1, 2, 3, 4, 0, 6)) / 6)
    assert LogSumExpPool(r=1.0).reduce(MAP).item() == pytest.approx(expected, rel=1e-6)
    assert gaps[-1] == pytest.approx(math.log(6) / 1000, rel=1e-3)  # only the max is left: log(n)/r
    # a large r and large values do not overflow
    assert torch.isfinite(LogSumExpPool(r=1e4).reduce(MAP * 1e3)).all()


def test_lse_with_small_r_scores_as_gap_through_the_network() -> None:
    torch.manual_seed(0)
    gap = CAMNet("tiny", 5, head_width=8).eval()
    lse = CAMNet("tiny", 5, pool="lse", pool_settings={"pool_r": 1e-6}, head_width=8).eval()
    lse.load_state_dict(gap.state_dict())
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(lse(images), gap(images), atol=1e-4, rtol=0)


@pytest.mark.parametrize("n, k, count", [(10, 0.3, 3), (7, 0.3, 2), (5, 0.5, 2), (10, 3, 3),
                                         (10, 30, 10), (10, 0, 0)])
def test_wildcat_counts_positions_as_the_original(n: int, k: float, count: int) -> None:
    assert positions(k, n) == count  # round(k n) for a fraction (Python's rounding: 2.5 -> 2)


def test_wildcat_score_is_the_formula_with_both_terms_and_fractional_k() -> None:
    values = torch.tensor([9.0, 1.0, 7.0, 3.0, 5.0, 2.0, 8.0, 0.0, 6.0, 4.0])  # 10 positions
    maps = values.view(1, 1, 2, 5)
    # k_max 0.3 -> 3 highest (9, 8, 7), k_min 0.2 -> 2 lowest (0, 1), alpha 0.7, halved
    pool = WildcatPool(maps=1, k_max=0.3, k_min=0.2, alpha=0.7)
    assert pool.reduce(maps).item() == pytest.approx((8.0 + 0.7 * 0.5) / 2)
    # whole counts, and no halving without the second term (k_min 0, or alpha 0)
    assert WildcatPool(maps=1, k_max=2, k_min=3, alpha=1.0).reduce(maps).item() == pytest.approx((8.5 + 1.0) / 2)
    assert WildcatPool(maps=1, k_max=0.3, k_min=0, alpha=0.7).reduce(maps).item() == pytest.approx(8.0)
    assert WildcatPool(maps=1, k_max=0.3, k_min=0.2, alpha=0).reduce(maps).item() == pytest.approx(8.0)
    # a negative alpha counts the lowest positions against the class
    assert WildcatPool(maps=1, k_max=1, k_min=1, alpha=-1).reduce(maps).item() == pytest.approx(4.5)


def test_wildcat_averages_each_class_maps_before_pooling() -> None:
    # 2 classes x 2 maps laid out class by class: channels (c0 m0, c0 m1, c1 m0, c1 m1)
    maps = torch.stack([torch.full((2, 2), v) for v in (1.0, 3.0, 10.0, 20.0)])[None]
    maps[0, 1, 0, 0] = 7.0  # class 0's mean map: [[4, 2], [2, 2]]
    scores = WildcatPool(maps=2, k_max=1, k_min=1, alpha=1.0).reduce(maps)
    assert scores.tolist() == [[pytest.approx((4.0 + 2.0) / 2), pytest.approx(15.0)]]


@pytest.mark.parametrize("pool", ["gap", "gmp", "lse", "wildcat"])
def test_each_pooling_map_has_gaps_shape_and_class_order(pool: str) -> None:
    torch.manual_seed(0)
    net = CAMNet("tiny", 4, pool=pool, pool_settings={"pool_maps": 3}, head_width=8).eval()
    per_class = net.pool.maps_per_class
    assert net.classifier.out_features == 4 * per_class
    with torch.no_grad():
        net.classifier.weight.zero_()
        net.classifier.bias.zero_()
        rows = slice(2 * per_class, 3 * per_class)  # only class 2 sees anything
        net.classifier.weight[rows] = torch.randn(per_class, 8)
        features = net.features(torch.randn(2, 3, 32, 32))
        maps = net.cams(features, torch.tensor([[2, 0, 3], [1, 2, 2]]))
        logits = net.classify(features)
    assert maps.shape == (2, 3, *features.shape[-2:])
    assert maps[0, 0].abs().sum() > 0 and maps[1, 1].abs().sum() > 0
    assert maps[0, 1:].abs().sum() == 0 and maps[1, 0].abs().sum() == 0
    torch.testing.assert_close(maps[1, 1], maps[1, 2])
    # the map is the mean of the class's score maps (WILDCAT: of its M maps), bias left out
    expected = torch.einsum("mc,chw->hw", net.classifier.weight[rows], features[0]) / per_class
    torch.testing.assert_close(maps[0, 0], expected)
    assert logits.shape == (2, 4)


def test_gap_and_gmp_score_as_before() -> None:
    """GAP and GMP keep the old arithmetic (pool the features, then the linear layer), so the
    checkpoints of earlier versions give the same numbers."""
    torch.manual_seed(0)
    features = torch.randn(2, 6, 5, 5)
    classifier = nn.Linear(6, 3)
    torch.testing.assert_close(make_pool("gap")(features, classifier), classifier(features.mean(dim=(2, 3))),
                               rtol=0, atol=0)
    torch.testing.assert_close(make_pool("gmp")(features, classifier), classifier(features.amax(dim=(2, 3))),
                               rtol=0, atol=0)

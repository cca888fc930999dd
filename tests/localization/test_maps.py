from __future__ import annotations

import numpy as np
import pytest

from camexp.localization import (
    MapError,
    as_quantized,
    as_size,
    cam_thresholds,
    check_score_map,
    normalize_map,
    prepare_map,
    quantize_map,
    threshold_levels,
)


def test_cam_thresholds_are_float64_arange() -> None:
    taus = cam_thresholds()
    assert taus.dtype == np.float64
    assert taus.shape == (1000,)
    assert np.array_equal(taus, np.arange(0, 1, 0.001))
    assert cam_thresholds(0.01).shape == (100,)
    with pytest.raises(ValueError, match="cam_curve_interval"):
        cam_thresholds(0)


def test_float64_threshold_example_from_paper() -> None:
    # docs/protocol.md: with a maximum of 100, the 291st threshold gives 28 in float64, 29 in float32.
    taus = cam_thresholds()
    assert threshold_levels(taus, 100)[290] == 28
    assert int(np.float32(taus[290]) * np.float32(100)) == 29
    assert int(np.float32(0.29) * np.float32(100)) == 29


def test_threshold_levels_truncate() -> None:
    taus = np.array([0.0, 0.5, 0.999])
    assert threshold_levels(taus, 255).tolist() == [0, 127, 254]
    assert threshold_levels(taus, 0).tolist() == [0, 0, 0]


def test_normalize_map_resizes_bicubic_then_min_max() -> None:
    raw = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    out = normalize_map(raw, (6, 8))
    assert out.shape == (6, 8)
    assert out.dtype == np.float64
    assert out.min() == 0.0 and out.max() == 1.0
    # same size: no interpolation, only the min-max normalization
    same = normalize_map(raw, (3, 4))
    assert np.allclose(same, (raw - raw.min()) / (raw.max() - raw.min()))


def test_normalize_constant_map_gives_zeros() -> None:
    out = normalize_map(np.full((7, 7), 3.5), 224)
    assert out.shape == (224, 224)
    assert not out.any()


def test_quantize_truncates() -> None:
    m = np.array([[0.0, 0.999, 1.0], [0.5, 0.00393, 0.0039]])
    assert quantize_map(m).tolist() == [[0, 254, 255], [127, 1, 0]]
    assert prepare_map(np.array([[0.0, 2.0]]), (1, 2)).tolist() == [[0, 255]]


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.zeros((2, 2, 2)), "must be 2-D"),
        (np.array([[0.0, np.nan]]), "NaN"),
        (np.array([[0.0, np.inf]]), "infinite"),
        (np.array([[-0.1, 0.5]]), r"\[0, 1\]"),
        (np.array([[0.5, 1.5]]), r"\[0, 1\]"),
    ],
)
def test_check_score_map_errors(arr: np.ndarray, match: str) -> None:
    with pytest.raises(MapError, match=match):
        check_score_map(arr, where="image id 'x'")


def test_normalize_rejects_nan_and_accepts_any_range() -> None:
    with pytest.raises(MapError, match="NaN"):
        normalize_map(np.array([[np.nan, 1.0]]), 4)
    assert normalize_map(np.array([[-7.0, 9.0]]), (1, 2)).tolist() == [[0.0, 1.0]]


def test_as_quantized_and_as_size() -> None:
    q = np.array([[0, 255]], dtype=np.uint8)
    assert as_quantized(q) is q
    assert as_quantized(np.array([[0.0, 1.0]])).tolist() == [[0, 255]]
    assert as_size(224) == (224, 224)
    assert as_size([10, 20]) == (10, 20)
    with pytest.raises(ValueError):
        as_size([1, 2, 3])

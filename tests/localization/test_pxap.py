from __future__ import annotations

import numpy as np
import pytest

from camexp.localization import (
    PxAPError,
    pxap_bin_edges,
    pxap_curve,
    pxap_from_histograms,
    pxap_histograms,
)


def test_bins_are_the_field_threshold_list_plus_three_edges() -> None:
    edges = pxap_bin_edges()
    assert edges.shape == (1003,)  # 1002 bins
    assert np.array_equal(edges[:1000], np.arange(0, 1, 0.001))
    assert edges[1000:].tolist() == [1.0, 2.0, 3.0]


def test_tiny_hand_computed_pxap() -> None:
    values = np.array([[0.9, 0.6, 0.3, 0.1]])
    fg = np.array([[True, False, True, False]])
    pos, neg = pxap_histograms(values, fg, None, pxap_bin_edges())
    assert pos.sum() == 2 and neg.sum() == 2
    # from the top: (P, R) = (1, .5), (.5, .5), (2/3, 1), (.5, 1) -> AP = .5 * 1 + .5 * 2/3
    assert pxap_from_histograms(pos, neg) == pytest.approx(100 * (0.5 + 1 / 3))
    precision, recall, valid = pxap_curve(pos, neg)
    assert recall[-1] == 1.0 and precision[-1] == 0.5
    assert not valid[0]  # no prediction above 2.0


def test_value_one_falls_in_the_one_to_two_bin() -> None:
    pos, neg = pxap_histograms(
        np.array([[1.0, 0.0]]), np.array([[True, False]]), None, pxap_bin_edges()
    )
    assert pos[1000] == 1 and neg[0] == 1
    assert pxap_from_histograms(pos, neg) == pytest.approx(100.0)


def test_ignore_region_drops_negatives_only() -> None:
    values = np.array([[0.9, 0.8, 0.2]])
    fg = np.array([[True, False, False]])
    ignore = np.array([[True, True, False]])  # ignore box overlapping the foreground
    pos, neg = pxap_histograms(values, fg, ignore, pxap_bin_edges())
    assert pos.sum() == 1 and neg.sum() == 1  # foreground kept, 0.8 dropped


def test_errors() -> None:
    with pytest.raises(PxAPError, match="foreground"):
        pxap_from_histograms(np.zeros(5), np.ones(5))
    with pytest.raises(PxAPError, match="shape"):
        pxap_histograms(np.zeros((2, 2)), np.zeros((3, 3), bool), None, pxap_bin_edges())

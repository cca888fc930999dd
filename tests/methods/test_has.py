"""Hide-and-Seek (docs/methods.md): whole grid-aligned patches of ``grid_size`` pixels hidden
with probability ``drop_rate`` per patch and image, filled with 0 on every channel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camexp.core.errors import MethodError
from camexp.methods.has import HideAndSeek, hide_patches


def _images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    # strictly positive so that a hidden pixel (0) is never confused with an unchanged one
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)) + 0.5


def _patch_ids(height: int, width: int, grid: int) -> torch.Tensor:
    rows = torch.arange(height)[:, None] // grid
    cols = torch.arange(width)[None, :] // grid
    return rows * math.ceil(width / grid) + cols


@pytest.mark.parametrize(("height", "width", "grid"), [(16, 16, 4), (10, 7, 4), (13, 9, 5), (5, 5, 8)])
def test_hidden_pixels_are_whole_grid_patches_of_the_stated_side(height, width, grid):
    images = _images(6, height, width)
    hidden, mask = hide_patches(images, grid, 0.5, np.random.default_rng(1))
    rows, cols = math.ceil(height / grid), math.ceil(width / grid)
    # the mask is the per-patch draw, replayed, spread over grid x grid pixels (edges truncated)
    draws = np.random.default_rng(1).random((6, rows, cols)) < 0.5
    ids = _patch_ids(height, width, grid)
    expected = torch.from_numpy(draws).reshape(6, -1)[:, ids.flatten()].reshape(6, height, width)
    assert torch.equal(mask, expected)
    # every patch is constant: each id's pixels are all hidden or all visible
    for image in range(6):
        for patch in ids.unique():
            values = mask[image][ids == patch]
            assert bool(values.all()) or not bool(values.any())
    # the edge patches are truncated to what remains of the image
    last_rows = height - (rows - 1) * grid
    last_cols = width - (cols - 1) * grid
    assert int((ids == ids.max()).sum()) == last_rows * last_cols
    # exactly one draw per patch and image was used from the generator
    rng = np.random.default_rng(1)
    hide_patches(images, grid, 0.5, rng)
    reference = np.random.default_rng(1)
    reference.random(6 * rows * cols)
    assert rng.random() == reference.random()
    # hidden pixels are 0 on every channel, the others untouched
    assert torch.equal(hidden[mask[:, None].expand_as(images)], torch.zeros(int(mask.sum()) * 3))
    assert torch.equal(hidden[~mask[:, None].expand_as(images)], images[~mask[:, None].expand_as(images)])
    assert 0 < int(mask.sum()) < mask.numel()


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_hidden_share_matches_the_drop_rate_and_images_draw_independently(rate):
    batch, grid, size = 400, 4, 32  # 400 images x 64 patches
    _, mask = hide_patches(torch.ones(batch, 3, size, size), grid, rate, np.random.default_rng(5))
    patches = mask[:, ::grid, ::grid].reshape(batch, -1).double()
    n = patches.numel()
    assert abs(patches.mean().item() - rate) < 4 * math.sqrt(rate * (1 - rate) / n)
    # image b and image b+1 hide the same patch with probability rate^2 (independent draws)
    both = (patches[:-1] * patches[1:]).mean().item()
    m = patches[:-1].numel()
    assert abs(both - rate**2) < 4 * math.sqrt(rate**2 * (1 - rate**2) / m)
    assert len({tuple(row.tolist()) for row in patches}) > batch // 2


def test_drop_rate_zero_and_one():
    images = _images(3, 12, 12)
    out, mask = hide_patches(images, 4, 0.0, np.random.default_rng(0))
    assert not bool(mask.any()) and torch.equal(out, images)
    out, mask = hide_patches(images, 4, 1.0, np.random.default_rng(0))
    assert bool(mask.all()) and torch.equal(out, torch.zeros_like(images))


def test_transform_batch_draws_from_the_method_generator():
    images = _images(4, 20, 20)
    method = HideAndSeek(grid_size=4, drop_rate=0.5)
    method.rng = np.random.default_rng(11)
    first = method.transform_batch({"input": images.clone(), "label": torch.zeros(4)})["input"]
    method.rng = np.random.default_rng(11)
    again = method.transform_batch({"input": images.clone(), "label": torch.zeros(4)})["input"]
    method.rng = np.random.default_rng(12)
    other = method.transform_batch({"input": images.clone(), "label": torch.zeros(4)})["input"]
    expected, _ = hide_patches(images, 4, 0.5, np.random.default_rng(11))
    assert torch.equal(first, expected) and torch.equal(again, expected)
    assert not torch.equal(other, expected)


def test_grid_size_zero_disables_hiding():
    images = _images(2, 8, 8)
    method = HideAndSeek(grid_size=0, drop_rate=1.0)
    method.rng = np.random.default_rng(3)
    out = method.transform_batch({"input": images.clone(), "label": torch.zeros(2)})["input"]
    assert torch.equal(out, images)
    assert method.rng.random() == np.random.default_rng(3).random()  # nothing was drawn


def test_defaults_are_the_benchmarks():
    method = HideAndSeek()
    assert (method.grid_size, method.drop_rate) == (4, 0.5)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"grid_size": -1}, "method.grid_size"), ({"grid_size": 2.5}, "method.grid_size"),
     ({"grid_size": True}, "method.grid_size"), ({"drop_rate": 1.5}, "method.drop_rate"),
     ({"drop_rate": -0.1}, "method.drop_rate"), ({"drop_rate": "0.5"}, "method.drop_rate")],
)
def test_bad_settings_raise_method_error(kwargs, key):
    with pytest.raises(MethodError, match=key.replace(".", r"\.")) as info:
        HideAndSeek(**kwargs)
    assert "method=has" in str(info.value)

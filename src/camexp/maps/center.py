"""The field's centre baseline: one isotropic Gaussian map centred on every image."""

from __future__ import annotations

import torch
from torch import Tensor


def center_gaussian(size: tuple[int, int], sigma_fraction: float = 0.25) -> Tensor:
    """The field's centre baseline: an isotropic Gaussian centred on an (H, W) image.

    ``sigma = sigma_fraction * min(H, W)`` pixels.
    """
    height, width = size
    ys = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    xs = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    sigma = sigma_fraction * min(height, width)
    return torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))

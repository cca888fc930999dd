"""SCM (Bai et al., ECCV 2022): TS-CAM plus a spatial calibration used in training only.

Same network and map as TS-CAM (:mod:`camexp.methods.tscam`), with the attention map A min-max
normalized per image, computed in training too (with gradient). In training, ``num_layers``
diffusion layers (4 in the paper) refine the head's output x (B, C, h, w) and the map a
(B, h*w), one after another:

1. S = the cosine similarity of the h*w positions' class-score vectors (B, hw, hw);
2. M = L x (lambda * S - 1), element-wise, with L the graph Laplacian (degree minus adjacency)
   of the h x w grid with 4-neighbour edges;
3. F = the transpose of an approximate inverse of M by Newton-Schulz iteration: X = 0.002 M^T
   (held constant: no gradient), then X <- X (2I - M X), 16 times in the first layer, 4 in the
   others;
4. r = F a; r = tanhshrink(r / (tau * max(a))), tanhshrink(u) = u - tanh(u); r min-max
   normalized per image;
5. x <- x + x * r (the same r for every class), a <- a + r.

Each layer learns lambda (starts at 1) and tau (starts at 0.5). The loss is the cross-entropy
of GAP of the refined x. At evaluation no diffusion layer runs: the logits are GAP of the head's
output and the map of class c is the normalized A times the head's channel c.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.values import check_count
from camexp.methods.base import normalize_maps
from camexp.methods.tscam import TSCAM

FIRST_ITERATIONS, ITERATIONS = 16, 4  # Newton-Schulz iterations: the first layer, the others
NEWTON_START = 0.002  # X0 = NEWTON_START * M^T


def grid_laplacian(height: int, width: int) -> Tensor:
    """The graph Laplacian (degree minus adjacency) of an ``height x width`` grid whose positions
    (row-major) are joined to their 4 neighbours: (hw, hw) float32."""
    count = height * width
    adjacency = torch.zeros(count, count)
    for row in range(height):
        for column in range(width):
            here = row * width + column
            if column + 1 < width:
                adjacency[here, here + 1] = adjacency[here + 1, here] = 1.0
            if row + 1 < height:
                adjacency[here, here + width] = adjacency[here + width, here] = 1.0
    return torch.diag(adjacency.sum(dim=1)) - adjacency


def newton_schulz_inverse(matrix: Tensor, iterations: int, start: float = NEWTON_START) -> Tensor:
    """An approximate inverse of each (n, n) ``matrix`` of a batch: X0 = ``start`` M^T (no
    gradient through it), then ``iterations`` x (X <- X (2I - M X))."""
    identity = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    inverse = start * matrix.detach().transpose(-2, -1)
    for _ in range(iterations):
        inverse = inverse @ (2 * identity - matrix @ inverse)
    return inverse


def minmax_rows(values: Tensor) -> Tensor:
    """Each row of (B, n) min-max normalized to [0, 1] (a constant row becomes zeros)."""
    low = values.amin(dim=1, keepdim=True)
    span = values.amax(dim=1, keepdim=True) - low
    return (values - low) / span.clamp_min(1e-12) * (span > 0)


class DiffusionLayer(nn.Module):
    """One of SCM's training-only layers: (x (B, C, h, w), a (B, hw)) -> refined (x, a)."""

    def __init__(self, grid: tuple[int, int], iterations: int) -> None:
        super().__init__()
        self.iterations = int(iterations)
        self.register_buffer("laplacian", grid_laplacian(*grid), persistent=False)
        self.strength = nn.Parameter(torch.ones(1))  # lambda, on the similarities
        self.temperature = nn.Parameter(torch.full((1,), 0.5))  # tau, on the propagated map

    def propagation(self, features: Tensor) -> Tensor:
        """F (B, hw, hw): the transposed Newton-Schulz inverse of L x (lambda S - 1)."""
        tokens = F.normalize(features.flatten(2).transpose(1, 2), dim=-1)
        similarity = tokens @ tokens.transpose(1, 2)
        matrix = self.laplacian.to(similarity.dtype) * (self.strength * similarity - 1)
        return newton_schulz_inverse(matrix, self.iterations).transpose(-2, -1)

    def forward(self, features: Tensor, attention: Tensor) -> tuple[Tensor, Tensor]:
        spread = (self.propagation(features) @ attention[..., None])[..., 0]
        scale = self.temperature * attention.amax(dim=1, keepdim=True)
        spread = minmax_rows(F.tanhshrink(spread / scale))
        features = features + features * spread.reshape(features.shape[0], 1, *features.shape[-2:])
        return features, attention + spread

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}"


class SCM(TSCAM):
    """Args:
    num_layers: diffusion layers refining the head's output in training (4).
    """

    name = "scm"
    records_in_training = True

    def __init__(self, num_layers: int = 4) -> None:
        super().__init__()
        self.num_layers = self.checked(check_count, "num_layers", num_layers)

    def branches(self, net) -> nn.Module:
        grid = self._layout[1]
        return nn.ModuleList(DiffusionLayer(grid, FIRST_ITERATIONS if index == 0 else ITERATIONS)
                             for index in range(self.num_layers))

    def attention(self) -> Tensor:
        """SCM's map: TS-CAM's attention map, min-max normalized per image."""
        return normalize_maps(super().attention())

    def forward(self, net, images: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        features = net.features(images)
        attention = self.attention()
        outputs = {"logits": net.classify(features), "features": features, "attention": attention}
        if net.training:
            refined, spread = features, attention.flatten(1)
            for layer in net.method_layers:
                refined, spread = layer(refined, spread)
            outputs["logits"] = net.classify(refined)
        return outputs

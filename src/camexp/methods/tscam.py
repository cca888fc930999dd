"""TS-CAM (Gao et al., ICCV 2021): token semantic coupled attention maps on a vision transformer.

Training is the transformer CAM network's (:mod:`camexp.models.vit_net`: the patch tokens as a
grid, a 3x3 convolution to the classes, GAP = the logits), cross-entropy only, exactly as
``method=cam`` on the same model. The map (evaluation only) couples two parts:

- the *semantic-agnostic attention map* A (B, 1, h, w): every block's attention weights
  (softmax of q k^T / sqrt(d), B x heads x N x N), averaged over the heads, summed over the
  blocks, the class token's row over the patch tokens' columns, as an h x w grid;
- the class's *semantic map*: the head's output channel of the class.

The map of class c is A x (head output, channel c), not normalized. The attention weights are
read from timm's blocks (:mod:`camexp.models.attention`) only while evaluating, so training
runs timm's fused attention.
"""

from __future__ import annotations

from torch import Tensor

from camexp.methods.base import Method, module_at
from camexp.models.attention import AttentionTaps


def class_token_row(weights: Tensor) -> Tensor:
    """(B, heads, N, N) attention weights -> (B, N): the head mean of the class token's row."""
    return weights.mean(dim=1)[:, 0]


def attention_map(rows: list[Tensor], prefix: int, grid: tuple[int, int]) -> Tensor:
    """TS-CAM's semantic-agnostic attention map (B, 1, h, w): the blocks' class-token rows
    (:func:`class_token_row`, one (B, N) per block) summed over the blocks, the ``h x w`` patch
    columns after the ``prefix`` tokens as a grid."""
    height, width = grid
    summed = sum(rows[1:], rows[0])
    return summed[:, prefix:prefix + height * width].reshape(len(summed), 1, height, width)


class TSCAM(Method):
    """TS-CAM: the network and training of CAM on a transformer, the attention-coupled map.

    No setting of its own. Runs on the transformer backbones (``model=deit_tiny|deit_small|
    deit_base|minivit``): it reads every block's attention.
    """

    name = "tscam"
    placements = {"vit": "every block's attention"}
    # attention recorded on every forward pass (SCM: its training needs it), else at evaluation
    records_in_training = False

    def __init__(self) -> None:
        super().__init__()
        self._attention: AttentionTaps | None = None
        self._layout: tuple[int, tuple[int, int]] = (1, (14, 14))

    def edit(self, net) -> None:
        self.placement(net.arch)
        modules = [module_at(net, self.point(net, f"{block}.attention").path) for block in self.blocks(net)]
        self._attention = AttentionTaps(modules, always=self.records_in_training, keep=class_token_row)
        grid = module_at(net, self.point(net, "output").path)  # the token grid: where patches sit
        self._layout = (grid.prefix, grid.grid)

    def attention(self) -> Tensor:
        """The semantic-agnostic attention map of the last forward pass (B, 1, h, w)."""
        return attention_map(self._attention.stacked(), *self._layout)

    def forward(self, net, images: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        if net.training:
            return super().forward(net, images, labels)
        with self._attention.recording():
            features = net.features(images)
        return {"logits": net.classify(features), "features": features, "attention": self.attention()}

    def maps(self, net, outputs: dict[str, Tensor], classes: Tensor) -> Tensor:
        return outputs["attention"] * net.cams(outputs["features"], classes)

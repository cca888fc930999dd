"""Vision transformers from timm as CAM trunks (docs/methods.md, "Transformers").

camexp implements no transformer: the network is timm's ``VisionTransformer`` (DeiT's own
definition, built by ``timm.create_model`` under timm's names, or the same class with a small
configuration for the CPU demo), without its classifier and its pooling. camexp adds one
module after it, :class:`TokenGrid`, which hands on what a CNN trunk hands on: the patch
tokens after the final LayerNorm as a (B, D, h, w) map, channels first, the class token (and
any token a method appends after the patch tokens) left out.

Weights load by timm's parameter names: timm's pretrained download (``model.pretrained=true``,
needs internet or timm's cache) or a local file (``model.weights_path=``: DeiT's release
``.pth`` holding ``{"model": state_dict}``, timm's ``.safetensors``/``.pth``, or a camexp
network's state dict); the classifier (``head.*``, DeiT's ``head_dist.*``) is dropped, and a
position embedding saved for another image size is resampled to this one as timm does.

Named points (:mod:`camexp.models.backbones`): ``tokens`` (the token sequence entering the first
block, class token and position embeddings added), ``block1`` ... ``blockN`` and, counted from
the end, ``block-1`` (the last block) ... ``block-N``; ``block<n>.attention`` is the block's
attention module (channels: its heads); ``output`` is the token grid.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from camexp.core.errors import ConfigError, WeightsError
from camexp.models.weights import load_same_shapes


@dataclass(frozen=True)
class ViTArch:
    """One transformer trunk: timm's model name (None: built from the class, no weights), its
    patch size, width, depth and heads, and the image size its weights were trained at."""

    name: str
    timm_name: str | None
    patch: int
    width: int
    depth: int
    heads: int
    img_size: int


VIT_ARCHS: dict[str, ViTArch] = {arch.name: arch for arch in (
    ViTArch("deit_tiny", "deit_tiny_patch16_224", 16, 192, 12, 3, 224),
    ViTArch("deit_small", "deit_small_patch16_224", 16, 384, 12, 6, 224),
    ViTArch("deit_base", "deit_base_patch16_224", 16, 768, 12, 12, 224),
    # the CPU demo's transformer: 4 narrow blocks, patch 8 gives a 14x14 grid on 112 px crops
    ViTArch("minivit", None, 8, 96, 4, 3, 112),
)}


def build_vit(arch: ViTArch, img_size: int | None = None, drop_path: float = 0.0) -> nn.Module:
    """timm's VisionTransformer for ``arch`` without classifier or pooling (its forward gives
    the normalized token sequence), at ``img_size``, with stochastic depth ``drop_path``."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    size = int(img_size or arch.img_size)
    if size % arch.patch:
        raise ConfigError(
            f"model.backbone.img_size={size} is not a multiple of {arch.name}'s patch size "
            f"{arch.patch}: set data.crop_size (and data.eval_size) to a multiple of it."
        )
    options = {"num_classes": 0, "global_pool": "", "img_size": size, "drop_path_rate": float(drop_path)}
    if arch.timm_name is not None:
        return timm.create_model(arch.timm_name, pretrained=False, **options)
    return VisionTransformer(patch_size=arch.patch, embed_dim=arch.width, depth=arch.depth,
                             num_heads=arch.heads, mlp_ratio=4.0, qkv_bias=True, **options)


class TokenGrid(nn.Module):
    """Tokens (B, N, D) -> the patch tokens as a map (B, D, h, w): the ``prefix`` tokens before
    them (the class token) and any after the ``h x w`` patch tokens are left out."""

    def __init__(self, prefix: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.prefix = int(prefix)
        self.grid = (int(grid[0]), int(grid[1]))

    def forward(self, tokens: Tensor) -> Tensor:
        height, width = self.grid
        patches = tokens[:, self.prefix:self.prefix + height * width]
        return patches.transpose(1, 2).reshape(len(tokens), tokens.shape[-1], height, width)

    def extra_repr(self) -> str:
        return f"prefix={self.prefix}, grid={self.grid}"


def vit_trunk(vit: nn.Module) -> nn.Sequential:
    """The trunk of a CAM network on a transformer: timm's network, then its token grid."""
    layout = token_layout(vit)
    return nn.Sequential(OrderedDict(vit=vit, grid=TokenGrid(layout.prefix, layout.grid)))


@dataclass(frozen=True)
class TimmWeights:
    """timm's pretrained weights of a model, by timm's name (a transformer backbone's
    ``imagenet_weights``; :func:`download_vit_state` gets them)."""

    model_name: str

    def __str__(self) -> str:
        return f"timm's {self.model_name}"


@dataclass(frozen=True)
class TokenLayout:
    """Where a transformer's patch tokens sit in its token sequence: after ``prefix`` tokens
    (the class token), ``grid`` = (h, w) of them."""

    prefix: int
    grid: tuple[int, int]

    def to_map(self, tokens: Tensor) -> Tensor:
        """(B, N, D) tokens -> (B, D, h, w) patch map; a (B, C, h, w) map passes unchanged."""
        if tokens.dim() == 4:
            return tokens
        return TokenGrid(self.prefix, self.grid)(tokens)


def token_layout(net: nn.Module) -> TokenLayout | None:
    """The token layout of the first timm or torchvision VisionTransformer inside ``net``; None
    for a network without one (a CNN)."""
    timm_vit = sys.modules.get("timm.models.vision_transformer")  # no timm module without timm
    from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

    for module in net.modules():
        if timm_vit is not None and isinstance(module, timm_vit.VisionTransformer):
            return TokenLayout(int(module.num_prefix_tokens), tuple(module.patch_embed.grid_size))
        if isinstance(module, TorchvisionViT):
            side = module.image_size // module.patch_size
            return TokenLayout(1, (side, side))
    return None


# -- weights ------------------------------------------------------------------------------

CLASSIFIER_KEYS = ("head.", "head_dist.", "fc_norm.")


def checkpoint_state(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The network's tensors of a loaded file: DeiT's release wraps them in ``{"model": ...}``."""
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    return dict(state)


def resample_position(state: dict[str, Tensor], network: nn.Module) -> None:
    """Resample ``state``'s ``pos_embed`` in place to ``network``'s token grid when it was saved
    for another square grid (timm's own resampling); other mismatches are left to the caller."""
    position, own = state.get("pos_embed"), getattr(network, "pos_embed", None)
    if position is None or own is None or position.shape == own.shape:
        return
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(network, "no_embed_class", False) else int(network.num_prefix_tokens)
    old = int(round((position.shape[1] - prefix) ** 0.5))
    if position.shape[-1] == own.shape[-1] and old * old + prefix == position.shape[1]:
        state["pos_embed"] = resample_abs_pos_embed(
            position, new_size=list(network.patch_embed.grid_size), old_size=[old, old],
            num_prefix_tokens=prefix)


def load_vit_state(vit: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load a timm/DeiT ViT state dict into ``vit`` by name: the classifier's keys are dropped,
    every other parameter of ``vit`` must be there with its shape (the position embedding is
    resampled when it was saved for another grid)."""
    state = {key: value for key, value in checkpoint_state(state).items()
             if not key.startswith(CLASSIFIER_KEYS)}
    own = vit.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise WeightsError(
            f"{source} lacks {len(missing)} of the transformer's parameters, e.g. {missing[:3]}: it "
            "is not a state dict of this timm architecture. Check model.arch (deit_tiny, "
            "deit_small, deit_base) against the file, and model.weights_path."
        )
    resample_position(state, vit)
    load_same_shapes(vit, state, source)


def download_vit_state(arch: ViTArch) -> dict[str, Tensor]:
    """timm's pretrained state dict of ``arch`` (from timm's cache, or downloaded by timm)."""
    if arch.timm_name is None:
        raise WeightsError(
            f"model.pretrained=true, but model.arch={arch.name!r} has no ImageNet weights "
            "(it trains from scratch). Set model.pretrained=false."
        )
    import timm

    try:
        network = timm.create_model(arch.timm_name, pretrained=True)
    except Exception as error:  # no internet, no cache, hub refused: the same advice
        first = " ".join(str(error).split())[:300] or type(error).__name__
        raise WeightsError(
            f"Could not get the ImageNet weights of {arch.name} (timm's {arch.timm_name}): {first}. "
            f"Either run once on a machine with internet (timm downloads them by that name into "
            f"its Hugging Face cache, which later runs reuse offline), or download DeiT's release "
            f"file (e.g. {arch.timm_name}-*.pth) or timm's model.safetensors elsewhere and pass "
            "model.weights_path=/path/to/that/file."
        ) from error
    return network.state_dict()


def read_weights_file(path: str, reader: Callable[[str], dict[str, Tensor]]) -> dict[str, Tensor]:
    """A local weights file: ``.safetensors`` through safetensors, anything else through
    ``reader`` (camexp's safe ``torch.load``)."""
    if str(path).endswith(".safetensors"):
        from pathlib import Path

        from safetensors.torch import load_file

        file = Path(path).expanduser()
        if not file.is_file():
            raise WeightsError(f"Weights file {file} does not exist. Fix model.weights_path=.")
        try:
            return load_file(str(file), device="cpu")
        except Exception as error:
            raise WeightsError(f"Could not read weights file {file}: {error}.") from error
    return reader(path)

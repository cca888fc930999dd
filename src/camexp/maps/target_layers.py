"""Which layer a post-hoc map explains: a default per network, or ``localization.target_layer``.

camexp networks: the maps that feed the global pooling (``head``, or ``trunk`` when
``head.num_convs=0``), so Grad-CAM and CAM look at the same features; a network may name its
own (``posthoc_target``: the transformer network's token grid, ``trunk``). torchvision
classifiers: the last convolutional stage of each family, and for ViTs the last block's first
LayerNorm (:data:`TORCHVISION_DEFAULTS`); timm's ViTs: the same (``blocks.<last>.norm1``).

A transformer's layers give tokens (B, N, D): camexp reshapes them for the user (the tokens
before the patch tokens dropped, the patch tokens as their h x w grid, channels first:
:meth:`camexp.models.vit.TokenLayout.to_map`). The chosen layer is checked by one forward pass
of a blank image: it must give (B, C, h, w) maps (after that reshape), else the error lists the
layers that do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from torch import Tensor, nn

from camexp.core.errors import TargetLayerError


def _features_last_relu(net: nn.Module) -> str:
    """VGG/AlexNet: the ReLU right after the last conv of ``features`` (conv5_3 / conv5, before
    the last max-pooling: the feature map the field's CAM networks keep)."""
    layers = list(net.features)
    last_conv = max(i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d))
    after = next((i for i in range(last_conv + 1, len(layers)) if isinstance(layers[i], nn.ReLU)),
                 last_conv)
    return f"features.{after}"


def _last_encoder_norm(net: nn.Module) -> str:
    """torchvision's ViT: the first LayerNorm of the last encoder block (its output: tokens)."""
    return f"encoder.layers.{list(net.encoder.layers._modules)[-1]}.ln_1"


# torchvision model-name prefix -> target layer (a dotted name, or a function of the net)
TORCHVISION_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("resnet", "layer4"), ("resnext", "layer4"), ("wide_resnet", "layer4"),
    ("densenet", "features"),
    ("vgg", _features_last_relu), ("alexnet", _features_last_relu),
    ("mobilenet", "features"), ("efficientnet", "features"), ("convnext", "features"),
    ("regnet", "trunk_output"), ("mnasnet", "layers"), ("shufflenet", "conv5"),
    ("squeezenet", "features"), ("googlenet", "inception5b"), ("inception", "Mixed_7c"),
    ("vit_", _last_encoder_norm),
)


def torchvision_default(name: str, net: nn.Module) -> str | None:
    """The default target layer of torchvision model ``name``; None for families without one
    (Swin, MaxViT)."""
    for prefix, rule in TORCHVISION_DEFAULTS:
        if name.startswith(prefix):
            return rule(net) if callable(rule) else rule
    return None


def timm_default(net: nn.Module) -> str | None:
    """A timm classifier: a ViT's last block's first LayerNorm; None for other families."""
    blocks = getattr(net, "blocks", None)
    if isinstance(blocks, nn.Sequential) and len(blocks) and hasattr(blocks[-1], "norm1"):
        return f"blocks.{len(blocks) - 1}.norm1"
    return None


def camnet_default(net: nn.Module) -> str | None:
    """A camexp network: the layer it names (``posthoc_target``), else the module whose
    output is pooled into the logits."""
    if getattr(net, "posthoc_target", None):
        return net.posthoc_target
    head = getattr(net, "head", None)
    if isinstance(head, nn.Module) and len(list(head.children())):
        return "head"
    return "trunk" if isinstance(getattr(net, "trunk", None), nn.Module) else None


Reshape = Callable[[Tensor], Tensor]


def spatial_layers(net: nn.Module, size: tuple[int, int], device=None,
                   reshape: Reshape | None = None) -> list[str]:
    """Names of the modules (at most three levels deep) whose output is a (1, C, h, w) map with
    more than one pixel for a blank image of ``size`` (after ``reshape``: a transformer's
    tokens as their grid), in the order they finish; the conv layers if that pass fails."""
    import torch

    found: list[str] = []
    handles = []
    for name, module in net.named_modules():
        if name and name.count(".") <= (2 if reshape else 1):
            def hook(_m, _i, output, name=name):
                if isinstance(output, Tensor) and reshape is not None and output.dim() == 3:
                    try:
                        output = reshape(output)
                    except RuntimeError:
                        return
                if (isinstance(output, Tensor) and output.dim() == 4 and name not in found
                        and output.shape[-1] * output.shape[-2] > 1):
                    found.append(name)
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, *size, device=device))
    except Exception:
        found = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    finally:
        for handle in handles:
            handle.remove()
    return found


def resolve_target_layer(net: nn.Module, requested: str | None, default: str | None,
                         size: tuple[int, int], what: str, device=None,
                         reshape: Reshape | None = None) -> tuple[str, nn.Module, int]:
    """The target layer's name, module and channel count, checked by a forward pass.

    Args:
        requested: ``localization.target_layer`` (None: ``default``).
        default: the network's default (None: it has none).
        size: the evaluation image size (H, W) for the check.
        what: the network, in words, for messages.
        reshape: a transformer's tokens -> their grid (None: a CNN's layers give maps).
    """
    import torch

    name = requested or default

    def fail(reason: str) -> TargetLayerError:
        candidates = spatial_layers(net, size, device, reshape)
        shown = ", ".join(candidates[-12:]) or "none"
        return TargetLayerError(
            f"{reason} Pass localization.target_layer=<dotted module name>; the layers of {what} "
            f"that give (B, C, h, w) maps are (last 12, in the order they run): {shown}."
        )

    if name is None:
        raise fail(f"{what} has no default target layer for post-hoc maps (no convolutional "
                   "last stage).")
    try:
        module = net.get_submodule(name)
    except AttributeError:
        raise fail(f"localization.target_layer={name!r} is not a module of {what}.") from None
    shapes: list[tuple[int, ...]] = []
    def keep_shape(_m, _i, output) -> None:
        if isinstance(output, Tensor) and reshape is not None and output.dim() == 3:
            with contextlib.suppress(RuntimeError):  # not the token sequence: left as it is
                output = reshape(output)
        shapes.append(tuple(output.shape) if isinstance(output, Tensor) else ())

    handle = module.register_forward_hook(keep_shape)
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, *size, device=device))
    finally:
        handle.remove()
    if not shapes or len(shapes[-1]) != 4:
        got = shapes[-1] if shapes else "nothing (it did not run)"
        raise fail(f"target layer {name!r} of {what} gives {got}, not (B, C, h, w) maps.")
    return name, module, shapes[-1][1]

"""Loading pretrained weights: torchvision's ImageNet enums, or a local file.

A local file may hold either torchvision's classifier state dict (what
``torchvision.models.VGG16_Weights.IMAGENET1K_V1`` downloads, e.g. ``vgg16-397923af.pth``)
or a whole camexp network's state dict (keys ``trunk.*``, ``head.*``, ``classifier.*``),
possibly inside a Lightning checkpoint (``state_dict`` with a ``net.`` prefix), or DeiT's
release file (``{"model": state_dict}``, :mod:`camexp.models.vit`).
Files are read with ``torch.load(weights_only=True)``: a file that would run code is refused.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from camexp.core.errors import WeightsError, load_failure


def download_imagenet_state_dict(name: str, weights: WeightsEnum | None) -> dict[str, Tensor]:
    """torchvision's ImageNet ``weights`` of backbone ``name`` (from torch hub's cache, or
    downloaded)."""
    if weights is None:
        raise WeightsError(
            f"model.pretrained=true, but backbone '{name}' has no ImageNet weights. "
            "Set model.pretrained=false to train it from scratch."
        )
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as error:  # URLError, HTTPError, OSError, hash mismatch: all say the same
        filename = weights.url.rsplit("/", 1)[-1]
        raise WeightsError(
            f"Could not get the ImageNet weights of '{name}' ({weights}) from {weights.url}: "
            f"{error}. On a machine without internet, download that file elsewhere and point "
            f"camexp at it with model.weights_path=/path/to/{filename} (torch hub's cache, "
            f"{torch.hub.get_dir()}/checkpoints/, is also searched)."
        ) from error


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``path`` safely, unwrapping a Lightning checkpoint if needed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"Weights file {path} does not exist. Fix model.weights_path= to point at a .pth/.pt "
            "state dict (for example torchvision's vgg16-397923af.pth)."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"Refusing to load {path}: it holds objects other than tensors, which could run code "
            f"when unpickled ({str(error).splitlines()[0]}). Re-save it as a plain state dict "
            "(torch.save(model.state_dict(), path)) from a trusted source."
        ) from error
    except Exception as error:
        raise WeightsError(
            f"Could not read weights file {path}: {load_failure(path, error)}. Point "
            "model.weights_path= at a complete torch.save file (a state dict)."
        ) from error
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = {key.removeprefix("net."): value for key, value in obj["state_dict"].items()}
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):  # DeiT's release files
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(
            f"Weights file {path} does not hold a state dict (a mapping of names to tensors). "
            "Save one with torch.save(model.state_dict(), path)."
        )
    return dict(obj)


def load_trunk_state(trunk: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load the trunk's share of a torchvision classifier state dict into the cut trunk.

    The trunk keeps torchvision's parameter names, so the file's keys line up; the cut-away
    layers (FC layers, auxiliary heads) may be present in the file and are ignored. Every
    parameter the trunk keeps must be in the file, with the same shape.
    """
    own = trunk.state_dict()
    missing_in_file = sorted(set(own) - set(state))
    if missing_in_file:
        raise WeightsError(
            f"{source} lacks {len(missing_in_file)} of the trunk's parameters, e.g. "
            f"{missing_in_file[:3]}. It is not a state dict of this torchvision architecture: "
            "check model.arch and model.weights_path."
        )
    load_same_shapes(trunk, state, source)


def load_same_shapes(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load ``module``'s parameters from ``state`` (which holds every one of them), refusing
    one of another shape with a paragraph that names it."""
    own = module.state_dict()
    for key, value in own.items():
        if state[key].shape != value.shape:
            raise WeightsError(
                f"{source}: parameter {key} has shape {tuple(state[key].shape)} but the network "
                f"expects {tuple(value.shape)}. Check that model.arch matches the file."
            )
    module.load_state_dict({key: state[key] for key in own}, strict=True)

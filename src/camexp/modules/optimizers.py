"""The optimizers a CAM network trains with (``model.optim.name``), available to every model.

- ``sgd`` (the CNN recipes, the default): momentum, optional Nesterov, weight decay on every
  parameter.
- ``adamw`` (the transformer papers' recipe): AdamW with ``betas`` and ``eps`` (1e-8), decoupled
  weight decay on the weights only: none on biases and normalization layers (every parameter
  with fewer than two dimensions) nor on the parameters a module names in its
  ``no_weight_decay()`` (timm's ViT: position embedding and class token; SAT: its token and its
  position embedding).

Both keep camexp's two learning-rate groups (the pretrained trunk at ``lr``, the new layers at
``lr x head_lr_mult``); each group records ``base_lr`` for the per-epoch schedule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adamw")


def no_decay_parameters(net: nn.Module) -> set[int]:
    """The ids of the parameters AdamW leaves without weight decay (see the module docstring)."""
    skip = {id(p) for p in net.parameters() if p.ndim <= 1}
    for module in net.modules():
        declared = getattr(module, "no_weight_decay", None)
        if callable(declared):
            names = set(declared())
            skip |= {id(p) for name, p in module.named_parameters(recurse=False) if name in names}
    return skip


def build_optimizer(net: nn.Module, groups: Iterable[dict[str, Any]],
                    optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer ``optim["name"]`` over ``groups`` (``{"params", "lr"}`` each)."""
    groups = [{**group, "base_lr": group["lr"]} for group in groups if group["params"]]
    name = optim.get("name", "sgd")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=optim["lr"], momentum=optim["momentum"],
                               nesterov=optim["nesterov"], weight_decay=optim["weight_decay"])
    if name != "adamw":
        raise ValueError(f"model.optim.name={name!r}; use one of {OPTIMIZERS}.")
    skip = no_decay_parameters(net)
    split = []
    for group in groups:
        params = list(group["params"])
        decayed = [p for p in params if id(p) not in skip]
        kept = [p for p in params if id(p) in skip]
        # named apart: the learning-rate monitor names its curves by group (lr-AdamW/trunk, ...)
        kept_name = {"name": f"{group['name']}_no_decay"} if "name" in group else {}
        split += [{**group, "params": decayed, "weight_decay": optim["weight_decay"]},
                  {**group, **kept_name, "params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW([group for group in split if group["params"]], lr=optim["lr"],
                             betas=tuple(optim.get("betas", (0.9, 0.999))),
                             eps=float(optim.get("eps", 1e-8)), weight_decay=optim["weight_decay"])

"""The LightningModule: a :class:`~camexp.models.CAMNet` trained with image-level labels only.

Fine-tuning as the field does it (docs/protocol.md): SGD with momentum 0.9 (or AdamW, the
transformer papers' optimizer: :mod:`camexp.modules.optimizers`), the layers added to the trunk
at ``head_lr_mult`` times the trunk's learning rate, step, multi-step or cosine decay per epoch.

Validation and test steps return the logits and the head's feature maps of their single
forward pass, so callbacks compute class activation maps without a second pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from camexp.data.samplers import sample_seed
from camexp.data.transforms import normalize_images
from camexp.methods.base import Method
from camexp.methods.cam import CAM
from camexp.models import POOL_SETTINGS
from camexp.models.networks import build_network
from camexp.modules.acceleration import (
    batch_to_channels_last,
    compile_errors,
    compile_net,
    to_channels_last,
)
from camexp.modules.optimizers import build_optimizer

SCHEDULERS = ("step", "multistep", "cosine", "none")


def _plain(value: Any) -> Any:
    """Config nodes as plain dicts/lists: checkpoints then hold only plain values (they load
    with ``weights_only=True``)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def build_method(config: Mapping[str, Any] | None) -> Method:
    """The training method of a ``method`` config (``_target_`` + its settings); CAM if None."""
    if not config:
        return CAM()
    method = instantiate(dict(config))
    if not isinstance(method, Method):
        raise TypeError(f"method._target_={config.get('_target_')!r} is not a camexp Method.")
    return method


class CAMClassifier(L.LightningModule):
    """Training of a CAM classifier (GAP, GMP, LSE or WILDCAT pooling) by a WSOL method; logs
    ``stage/metric`` names.

    Args:
        arch, num_classes, pool, pretrained, weights_path: see :class:`CAMNet`.
        pool_r, pool_maps, pool_k_max, pool_k_min, pool_alpha: the pooling's settings
            (log-sum-exp's ``r``; WILDCAT's maps per class, ``k_max``, ``k_min``, ``alpha``:
            :mod:`camexp.models.layers`); the other poolings ignore them.
        head: ``{"num_convs": int, "width": int}``, the layers added on the trunk.
        optim: ``{"name": "sgd"|"adamw", "lr", "momentum", "nesterov", "weight_decay",
            "head_lr_mult", "betas", "eps"}`` (momentum/nesterov: SGD; betas/eps: AdamW).
        scheduler: ``{"name": "step"|"multistep"|"cosine"|"none", "step_size": epochs,
            "milestones": [epochs], "gamma": float}``.
        backbone: the backbone's own construction settings (transformers: ``img_size``,
            ``drop_path``; :func:`camexp.models.networks.build_network`).
        method: the ``method`` config (``{"_target_": "camexp.methods.adl.ADL", ...}``); CAM if None.
        seed: seeds the method's random draws per step, with the global step and the rank.
        channels_last: the network's weights and the batches in channels-last memory format.
        compile: ``torch.compile`` the network's trunk and head (:mod:`camexp.modules.acceleration`).
            Both are run-time settings, not saved with the checkpoint's hyper-parameters.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        pool: str = "gap",
        pool_r: float = POOL_SETTINGS["pool_r"],
        pool_maps: int = POOL_SETTINGS["pool_maps"],
        pool_k_max: float = POOL_SETTINGS["pool_k_max"],
        pool_k_min: float = POOL_SETTINGS["pool_k_min"],
        pool_alpha: float = POOL_SETTINGS["pool_alpha"],
        head: dict[str, int] | None = None,
        pretrained: bool = False,
        weights_path: str | None = None,
        optim: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        method: dict[str, Any] | None = None,
        seed: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        backbone: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        head, optim, scheduler, method = _plain(head), _plain(optim), _plain(scheduler), _plain(method)
        backbone = _plain(backbone)
        self.save_hyperparameters(ignore=["channels_last", "compile"])
        self.method = build_method(method)
        self.seed = int(seed or 0)
        head = {"num_convs": 1, "width": 1024, **(head or {})}
        self.optim = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False,
                      "weight_decay": 1e-4, "head_lr_mult": 10.0, **(optim or {})}
        self.scheduler = {"name": "step", "step_size": 10, "gamma": 0.1, "milestones": [],
                          **(scheduler or {})}
        if self.scheduler["name"] not in SCHEDULERS:
            raise ValueError(
                f"model.scheduler.name={self.scheduler['name']!r}; use one of {SCHEDULERS}."
            )
        pool_settings = {"pool_r": pool_r, "pool_maps": pool_maps, "pool_k_max": pool_k_max,
                         "pool_k_min": pool_k_min, "pool_alpha": pool_alpha}
        self.net = build_network(
            arch, backbone, num_classes=num_classes, pool=pool, pool_settings=pool_settings,
            head_num_convs=head["num_convs"],
            head_width=head["width"], pretrained=pretrained, weights_path=weights_path,
            method=self.method,
        )
        self.channels_last = bool(channels_last)
        self.compiled = bool(compile)
        if self.channels_last:
            to_channels_last(self.net)
        if self.compiled:
            compile_net(self.net)
        top_k = min(5, num_classes)
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_{name}": MulticlassAccuracy(num_classes, top_k=k, average="micro")
            for stage in ("val", "test")
            for name, k in (("acc_top1", 1), ("acc_top5", top_k))
        })

    @override
    def forward(self, images: Tensor) -> Tensor:
        """Logits for normalized images (B, 3, H, W)."""
        return self.net(images)

    @override
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        # Batches travel as uint8; normalize on the device, keep the pixels for pictures.
        batch["input"] = normalize_images(batch["image"])
        if self.channels_last:
            batch["input"] = batch_to_channels_last(batch["input"])
        return batch

    def _compile_errors(self):
        return compile_errors(self.compiled, self.method.name, self.net.arch)

    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        # the method's draws: a function of (seed, step, rank), so runs repeat and resume exactly
        self.method.rng = np.random.default_rng(sample_seed(self.seed, self.global_step, self.global_rank))
        batch = self.method.transform_batch(batch)
        with self._compile_errors():
            outputs = self.method.forward(self.net, batch["input"], batch["label"])
            loss = self.method.loss(self.net, outputs, batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(batch["label"]))
        return loss

    @override
    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        # inductor compiles the backward graph at the first backward pass
        with self._compile_errors():
            super().backward(loss, *args, **kwargs)

    def _evaluate(self, batch: dict, stage: str) -> dict[str, Tensor]:
        with self._compile_errors():
            outputs = self.method.forward(self.net, batch["input"], batch["label"])
        logits = outputs["logits"]
        loss = F.cross_entropy(logits, batch["label"])
        size = len(logits)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=size)
        for name in ("acc_top1", "acc_top5"):
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(logits, batch["label"])
            self.log(f"{stage}/{name}", metric, on_epoch=True, prog_bar=name == "acc_top1",
                     batch_size=size)
        return {key: value.detach() for key, value in outputs.items()}

    def class_maps(self, outputs: dict[str, Tensor], classes: Tensor) -> Tensor:
        """Localization maps (B, K, h, w) of ``classes`` (B, K) at feature resolution, from
        the outputs of :meth:`validation_step`/:meth:`test_step` (no second forward pass)."""
        return self.method.maps(self.net, outputs, classes)

    @override
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val")

    @override
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "test")

    def lr_factor(self, epoch: int) -> float:
        """The learning-rate multiplier of ``epoch``: step decay ``gamma ** (epoch // step_size)``,
        multi-step ``gamma ** (number of milestones <= epoch)``, cosine
        ``(1 + cos(pi * epoch / max_epochs)) / 2``, or 1.

        A pure function of the epoch, applied at each epoch's start (not a stepped scheduler),
        so a run resumed from any checkpoint follows exactly the same schedule.
        """
        name = self.scheduler["name"]
        if name == "step":
            return float(self.scheduler["gamma"]) ** (epoch // int(self.scheduler["step_size"]))
        if name == "multistep":
            passed = sum(epoch >= int(milestone) for milestone in self.scheduler["milestones"])
            return float(self.scheduler["gamma"]) ** passed
        if name == "cosine":
            total = max(1, self.trainer.max_epochs or 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))
        return 1.0

    @override
    def on_train_epoch_start(self) -> None:
        factor = self.lr_factor(self.current_epoch)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        optim = self.optim
        groups = [
            {"params": self.net.trunk_parameters(), "lr": optim["lr"], "name": "trunk"},
            {"params": self.net.new_parameters(), "lr": optim["lr"] * optim["head_lr_mult"],
             "name": "head"},
        ]
        return build_optimizer(self.net, groups, optim)

"""Warnings when a run failed while looking finished: training that collapsed.

A run can end with status 0 and a full ``metrics.json`` and still be useless: the loss
never left its value at chance (``ln(C)`` for cross-entropy: nothing learnt, learning rate
0, a dead head), classification at chance, every class activation map constant (nothing to
threshold), or localization below the centre-Gaussian baseline. :class:`TrainingHealth`
records what it needs during the run (the training loss per epoch, the test split's size and
how many of its ground-truth-class maps are constant); :func:`health_warnings` turns that and
the final metrics into sentences, which ``finish_run`` prints, writes to the log and to
``metrics.json`` (``"warnings"``).

The whole run is judged: the loss history restored from a checkpoint is taken only when
training resumes from it, never when the test loads the best epoch's checkpoint (whose
history stops at that epoch). Each warning says only what its evidence shows, for the run's
method (:meth:`camexp.methods.base.Method.chance_loss`, ``trains_classifier``): no loss
warning for a loss without a chance value (SPG's seed losses, FSL's BCE), no chance-accuracy
warning for a method that trains no classifier (FSL).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.types import STEP_OUTPUT
from typing_extensions import override

from camexp.methods.base import Method

# the epoch-mean training loss counts as "at ln(C)" within this fraction of ln(C)
LOSS_TOLERANCE = 0.05
# a map whose range (max - min) is at most this fraction of its largest |value| is constant
CONSTANT_RANGE = 1e-6
# "at chance": top-1 accuracy not above 1/C by this many binomial standard errors
CHANCE_SIGMAS = 2.0


class TrainingHealth(L.Callback):
    """Collects the signs of a collapsed run (see the module docstring)."""

    def __init__(self) -> None:
        self.epoch_losses: list[float] = []
        self._loss_sum = 0.0
        self._loss_count = 0
        self.num_classes: int | None = None
        self.test_images = 0
        self.constant_maps = 0

        self._sum_epoch = -1  # the epoch the running sums belong to
        self._restore = True  # whether the next load_state_dict is a resumed training's

    # the losses so far travel in checkpoints: a resumed run warns as an uninterrupted one
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"epoch_losses": list(self.epoch_losses), "loss_sum": self._loss_sum,
                "loss_count": self._loss_count, "sum_epoch": self._sum_epoch}

    @override
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # called before load_state_dict: a test loading the best epoch keeps this run's history
        self._restore = trainer.state.fn == TrainerFn.FITTING

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._restore:
            return
        self.epoch_losses = [float(x) for x in state_dict.get("epoch_losses", [])]
        self._loss_sum = float(state_dict.get("loss_sum", 0.0))
        self._loss_count = int(state_dict.get("loss_count", 0))
        self._sum_epoch = int(state_dict.get("sum_epoch", -1))

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch != self._sum_epoch:  # not an epoch resumed in its middle
            self._loss_sum, self._loss_count = 0.0, 0
            self._sum_epoch = trainer.current_epoch

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss_sum += float(loss)
            self._loss_count += 1

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._loss_count:
            self.epoch_losses.append(self._loss_sum / self._loss_count)
        self._loss_sum, self._loss_count, self._sum_epoch = 0.0, 0, -1

    @override
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.test_images = self.constant_maps = 0

    @override
    @torch.no_grad()
    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                          batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, dict) or "logits" not in outputs:
            return
        self.num_classes = int(outputs["logits"].shape[1])
        self.test_images += len(batch["label"])
        class_maps = getattr(pl_module, "class_maps", None)
        if class_maps is None:
            return
        maps = class_maps(outputs, batch["label"][:, None])[:, 0].float().flatten(1)
        spread = maps.amax(dim=1) - maps.amin(dim=1)
        scale = maps.abs().amax(dim=1).clamp_min(1e-30)
        self.constant_maps += int(((spread <= CONSTANT_RANGE * scale) | ~torch.isfinite(spread)).sum())

    @override
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # counts summed over DDP processes (every rank calls reduce)
        counts = torch.tensor([self.test_images, self.constant_maps], dtype=torch.float64,
                              device=pl_module.device)
        counts = trainer.strategy.reduce(counts, reduce_op="sum")
        self.test_images, self.constant_maps = (int(v) for v in counts.tolist())


def _stage(metrics: dict[str, float], name: str) -> tuple[str, float] | None:
    """``(stage, value)`` of ``test/<name>``, else ``val/<name>``, else None."""
    for stage in ("test", "val"):
        value = metrics.get(f"{stage}/{name}")
        if value is not None and math.isfinite(float(value)):
            return stage, float(value)
    return None


def health_warnings(metrics: dict[str, float], health: TrainingHealth | None,
                    num_classes: int | None = None, method: Method | None = None) -> list[str]:
    """The warnings of a finished run, one sentence each (empty when it looks healthy).

    ``method``: the run's training method (None: CAM's cross-entropy and classifier)."""
    warnings: list[str] = []
    classes = num_classes or (health.num_classes if health else None)
    if health is not None and health.epoch_losses and classes and classes > 1:
        losses = health.epoch_losses
        chance_loss = method.chance_loss(classes) if method is not None else math.log(classes)
        if any(not math.isfinite(x) for x in losses):
            warnings.append("The training loss became NaN or infinite: the run diverged. Lower "
                            "model.optim.lr or check the data.")
        elif chance_loss is not None and all(abs(x - chance_loss) <= LOSS_TOLERANCE * chance_loss
                                             for x in losses):
            value = (f"ln({classes}) = {chance_loss:.3f}" if math.isclose(chance_loss, math.log(classes))
                     else f"{chance_loss:.3f}, method={method.name}'s loss when every one of the "
                          f"{classes} classes is equally likely")
            warnings.append(
                f"The training loss never left {value} (epoch means {min(losses):.3f} to "
                f"{max(losses):.3f} over {len(losses)} epochs): the network learnt nothing. Check "
                "model.optim.lr, the labels and the head (a dead or zeroed classifier, GMP from "
                "scratch)."
            )
    top1 = _stage(metrics, "acc_top1")
    images = health.test_images if health is not None else 0
    trains_classifier = method is None or method.trains_classifier
    if top1 is not None and classes and classes > 1 and trains_classifier:
        stage, accuracy = top1
        chance = 1.0 / classes
        n = images if stage == "test" and images else None
        margin = CHANCE_SIGMAS * math.sqrt(chance * (1 - chance) / n) if n else 0.01
        if accuracy <= chance + margin:
            on = f" on {n} images" if n else ""
            warnings.append(
                f"{stage} top-1 accuracy {100 * accuracy:.1f}% is at chance for {classes} classes "
                f"(1/{classes} = {100 * chance:.1f}%, not above it by {CHANCE_SIGMAS:g} standard "
                f"errors{on}): the classifier did not learn, so the top-1/top-5 accuracies and "
                "the paper's top-1/top-5 localization errors mean nothing here. The metrics of "
                "the ground-truth class's maps (MaxBoxAccV2, PxAP, GT-known) do not use the "
                "prediction: judge the maps by them."
            )
    if health is not None and health.test_images and health.constant_maps:
        share = health.constant_maps / health.test_images
        if share >= 0.5:
            which = ("every test ground-truth-class map is" if health.constant_maps == health.test_images
                     else f"{100 * share:.0f}% of the test ground-truth-class maps are")
            warnings.append(
                f"{which} constant ({health.constant_maps} of "
                f"{health.test_images} images, max = min): there is nothing to threshold, so the "
                "box metrics of this run measure no localization."
            )
    v2 = _stage(metrics, "MaxBoxAccV2")
    if v2 is not None:
        stage, value = v2
        baseline = metrics.get(f"{stage}/MaxBoxAccV2_center_baseline")
        if baseline is not None and value < float(baseline):
            warnings.append(
                f"{stage}/MaxBoxAccV2 {value:.1f} is below the centre-Gaussian baseline "
                f"{float(baseline):.1f}: the maps localize worse than a fixed blob in the middle "
                "of every image."
            )
    return warnings


def run_warnings(trainer: L.Trainer, metrics: dict[str, float]) -> list[str]:
    """:func:`health_warnings` of a trainer's run (its :class:`TrainingHealth` callback, if any)."""
    health = next((c for c in trainer.callbacks if isinstance(c, TrainingHealth)), None)
    module = getattr(trainer, "lightning_module", None)
    hparams = getattr(module, "hparams", {}) if module is not None else {}
    method = getattr(module, "method", None)
    return health_warnings(metrics, health, hparams.get("num_classes") if hparams else None,
                           method if isinstance(method, Method) else None)

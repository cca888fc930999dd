"""Stop a run whose training diverged (non-finite loss, weights or val outputs), on every DDP
process at the same step, with one paragraph naming the step and the learning rate."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.types import STEP_OUTPUT
from typing_extensions import override

from camexp.core.errors import TrainingDiverged


class DivergenceGuard(L.Callback):
    """Stop training at the first step whose loss is not finite on any process, or when the
    weights or the network's val outputs (logits, feature maps) are not finite.

    Every process takes the same decision (one all-reduce of a flag per step), so DDP ranks stop
    together instead of waiting for each other.
    """

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        bad = not bool(loss.detach().isfinite().all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise TrainingDiverged(self._message("train/loss is not finite", trainer, pl_module))

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the last steps of an epoch can blow the weights up after a finite loss: check them
        # once before they make maps (NaN maps would stop the run with a less clear message)
        params = [p.detach().isfinite().all() for p in pl_module.parameters()]
        bad = bool(params) and not bool(torch.stack(params).all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise TrainingDiverged(self._message("the weights are not finite", trainer, pl_module))

    @override
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        # huge but finite weights can still give infinite features, hence NaN maps
        tensors = [v for v in (outputs or {}).values() if isinstance(v, torch.Tensor)] \
            if isinstance(outputs, dict) else []
        bad = bool(tensors) and not all(bool(t.isfinite().all()) for t in tensors)
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise TrainingDiverged(self._message("the network's outputs on the val split are not "
                                                 "finite", trainer, pl_module))

    @staticmethod
    def _message(what: str, trainer, pl_module) -> str:
        optim = getattr(pl_module.hparams, "optim", None) or {}  # any LightningModule
        return (f"{what} at epoch {trainer.current_epoch}, step {trainer.global_step} "
                f"(model.optim.lr={optim.get('lr')}, model.optim.weight_decay="
                f"{optim.get('weight_decay')}): the training diverged. Lower model.optim.lr (or the "
                "weight decay); in a search this trial is recorded as failed and the search goes on.")

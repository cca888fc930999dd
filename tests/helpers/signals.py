"""A test-only callback that signals its own process at a chosen training step."""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    """Send ``signum`` (a name like ``SIGKILL``) to this process after global step ``step``."""

    def __init__(self, step: int, signum: str) -> None:
        self.step = step
        self.signum = getattr(signal, signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class SignalInStage(L.Callback):
    """Send ``signum`` to this process at the first batch of ``stage`` (validation or test)
    in epoch ``epoch`` (None: any; validation: not during the sanity check)."""

    def __init__(self, stage: str, signum: str, epoch: int | None = None) -> None:
        self.stage = stage
        self.signum = getattr(signal, signum)
        self.epoch = epoch
        self.sent = False

    def _maybe(self, trainer, stage: str) -> None:
        if (stage == self.stage and not self.sent and not trainer.sanity_checking
                and self.epoch in (None, trainer.current_epoch)):
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._maybe(trainer, "validate")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._maybe(trainer, "test")

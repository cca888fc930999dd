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

"""Plain progress lines for logs that are not a terminal (SLURM, ``nohup``, ``| tee``).

Lightning's progress bars redraw one line in place: written to a file they show nothing
until the epoch ends. When stdout is not a terminal (or ``mode="always"``) this callback
turns the bar off and prints, every ``interval_s`` seconds, one line with the epoch, the
step, the images per second, the time left and the mean training loss since the last line;
and at every epoch end the epoch's metrics. Epoch lines always go to the run's log file
(``train.log``), whatever the terminal.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress import ProgressBar
from lightning.pytorch.utilities.types import STEP_OUTPUT
from typing_extensions import override

from camexp.core.messages import say

MODES = ("auto", "always", "never")
# the metrics of the epoch line, in this order, when logged
EPOCH_METRICS = ("train/loss_epoch", "val/loss", "val/acc_top1", "val/acc_top5", "val/MaxBoxAccV2",
                 "val/MaxBoxAcc", "val/PxAP")


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1:02:05``; unknown -> ``?``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _epochs(trainer: L.Trainer) -> str:
    """The planned number of epochs, ``?`` when training is bounded by steps or time."""
    epochs = trainer.max_epochs
    return str(epochs) if isinstance(epochs, int) and epochs > 0 else "?"


class PlainProgress(L.Callback):
    """Progress as plain lines when the console is not a terminal.

    Args:
        interval_s: seconds between two progress lines (0: one line per step).
        mode: ``auto`` (plain lines when stdout is not a terminal), ``always``, ``never``.
    """

    def __init__(self, interval_s: float = 60.0, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"callbacks.progress.mode={mode!r}; use one of {MODES}.")
        self.interval_s = float(interval_s)
        self.mode = mode
        self.plain = False

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.plain = self.mode == "always" or (self.mode == "auto" and not sys.stdout.isatty())
        if self.plain:
            for callback in trainer.callbacks:
                if isinstance(callback, ProgressBar):
                    callback.disable()

    # -- steps ----------------------------------------------------------------------------

    def _reset(self) -> None:
        now = time.perf_counter()
        self.epoch_start = self.last_line = now
        self.images = self.steps = self.epoch_steps = 0
        self.loss_sum, self.loss_count = 0.0, 0

    # a run resumed in the middle of an epoch starts without on_train_epoch_start
    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                           batch: Any, batch_idx: int) -> None:
        if not (self.plain and trainer.is_global_zero):
            return
        self.images += len(batch["label"]) * trainer.world_size
        self.steps += 1
        self.epoch_steps += 1
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.loss_sum += float(loss)
            self.loss_count += 1
        now = time.perf_counter()
        if now - self.last_line < self.interval_s:
            return
        say(self.progress_line(trainer, batch_idx, now))
        self.last_line, self.images, self.steps = now, 0, 0
        self.loss_sum, self.loss_count = 0.0, 0

    def progress_line(self, trainer: L.Trainer, batch_idx: int, now: float) -> str:
        """``epoch 3/50 step 120/169 | 412.3 img/s | ETA epoch 0:00:12, run 0:21:03 | loss 1.2345``."""
        total = trainer.num_training_batches
        total = int(total) if isinstance(total, (int, float)) and math.isfinite(total) else None
        step = batch_idx + 1
        elapsed = max(now - self.last_line, 1e-9)
        rate = self.images / elapsed
        seconds_per_step = (now - self.epoch_start) / max(1, self.epoch_steps)
        parts = [f"epoch {trainer.current_epoch + 1}/{_epochs(trainer)}",
                 f"step {step}/{total if total is not None else '?'}", f"{rate:.1f} img/s"]
        if total is not None:
            left_epoch = (total - step) * seconds_per_step
            epochs_after = max(0, (trainer.max_epochs or 0) - trainer.current_epoch - 1)
            left_run = left_epoch + epochs_after * total * seconds_per_step
            parts.append(f"ETA epoch {format_duration(left_epoch)}, run {format_duration(left_run)} "
                         "(training steps)")
        if self.loss_count:
            parts.append(f"loss {self.loss_sum / self.loss_count:.4f}")
        return " | ".join(parts)

    # -- epochs ---------------------------------------------------------------------------

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # validation has run by now: its metrics are in callback_metrics
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        say(self.epoch_line(trainer), logging.INFO, console=self.plain)

    def epoch_line(self, trainer: L.Trainer) -> str:
        """``epoch 3/50 done in 0:01:12: train/loss 1.2345, val/acc_top1 0.8120, ...``."""
        metrics = trainer.callback_metrics
        shown = []
        for key in EPOCH_METRICS:
            if key in metrics:
                name = "train/loss" if key == "train/loss_epoch" else key
                shown.append(f"{name} {float(metrics[key]):.4f}")
        took = format_duration(time.perf_counter() - getattr(self, "epoch_start", time.perf_counter()))
        return (f"epoch {trainer.current_epoch + 1}/{_epochs(trainer)} done in {took}: "
                + (", ".join(shown) if shown else "no metrics logged"))

"""Preemption (SIGTERM, SIGUSR1): save ``preempted.ckpt`` with the RNG states and stop in any
stage, so that ``resume=auto`` continues exactly where the run was stopped."""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM or SIGUSR1, save ``<dirpath>/preempted.ckpt`` and stop, in every stage.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary of training,
    validation and test (on every DDP rank at once); SIGUSR1, SLURM's usual warning signal, is
    routed to the same handler at the start of every stage (the sanity check included), so it
    never kills the job with its default action. While fitting, a signal during validation
    takes effect when that validation (and its checkpoints) is done, so the resumed run
    misses no validation. The checkpoint is written while fitting only
    (with the global RNG states, restored on resume); a signal during the test after training
    needs none, the finished training's ``last.ckpt`` is resumed from (and tested again).
    """

    def __init__(self, dirpath: str, filename: str = "preempted.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.preempted = False

    @staticmethod
    def _route_sigusr1() -> None:
        # Lightning installs its SIGTERM handler when a stage starts (after setup)
        sigterm = signal.getsignal(signal.SIGTERM)
        if callable(sigterm) and hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, sigterm)

    @override
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._route_sigusr1()

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.preempted = False
        self._route_sigusr1()

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._route_sigusr1()
        if trainer.state.fn == "fit":
            self._hold_signals()

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._release_signals()

    def _hold_signals(self) -> None:
        """While fitting, a signal during validation stops the run once the validation (and
        its checkpoints) is done: Lightning would stop it mid-way, and a resume from there
        skips the rest of that validation (its metrics and its epoch's checkpoints)."""
        self._pending: tuple | None = None
        self._held = {}
        for signum in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if signum is not None and callable(signal.getsignal(signum)):
                self._held[signum] = signal.getsignal(signum)
                signal.signal(signum, self._remember)

    def _remember(self, signum, frame) -> None:
        self._pending = (signum, frame)

    def _release_signals(self) -> None:
        held, self._held = getattr(self, "_held", {}), {}
        for signum, handler in held.items():
            signal.signal(signum, handler)
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is not None and signal.SIGTERM in held:
            held[signal.SIGTERM](*pending)  # Lightning's: stop at the next batch or epoch end

    @override
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._route_sigusr1()

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)
            self.preempted = True

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            set_rng_states(state_dict["rng"])


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states, as tensors and plain values."""
    numpy_state = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

"""A finished run is left alone, and a run whose test is re-run keeps its training's numbers.

``resume=auto`` on a run folder whose training reached its configured end and whose
``metrics.json`` holds the test (the same command run again, a requeued job that had
finished) used to test again and rewrite ``metrics.json`` with the test's keys only, counting
another test in the ledger. Now :func:`finished_numbers` recognises such a run before anything
is built or written, and the caller reports it and returns its numbers.

When the training is complete but the test is not (a preemption during the test), the test runs
again; :class:`FitMetrics` keeps the training's final numbers (train, val, learning rate) in
every checkpoint, so ``metrics.json`` then holds them with the test's, as an uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf
from typing_extensions import override

from camexp.core.messages import say
from camexp.runs.checkpoints import (
    best_checkpoint,
    checkpoint_hyperparameters,
    settings_that_differ,
    training_complete,
)

METRICS_FILE = "metrics.json"
CHECKPOINT_KEY = "camexp_metrics"


def stored_numbers(output_dir: str | Path) -> dict[str, float] | None:
    """The numbers of a run folder's ``metrics.json`` (None when absent or unreadable)."""
    path = Path(output_dir) / METRICS_FILE
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict):
        return None
    return {str(k): float(v) for k, v in found.items() if isinstance(v, (int, float))}


def finished_numbers(cfg: DictConfig, resume_from: str | Path) -> dict[str, float] | None:
    """The stored numbers of the run folder when its run is finished, else None.

    Finished: the checkpoint ``resume=auto`` found has trained to ``trainer.max_epochs`` (or
    ``max_steps``), and ``metrics.json`` exists, with the test's numbers when ``test=true``.
    Raising ``trainer.max_epochs`` makes the run unfinished again: it trains further.
    """
    numbers = stored_numbers(cfg.paths.output_dir)
    if numbers is None:
        return None
    if cfg.get("test", True) and not any(key.startswith("test/") for key in numbers):
        return None
    trainer = cfg.get("trainer") or {}
    if not training_complete(resume_from, trainer.get("max_epochs"), trainer.get("max_steps", -1)):
        return None
    best = best_checkpoint(resume_from) or str(resume_from)
    say(f"camexp: {cfg.paths.output_dir} holds a finished run: {resume_from} trained to the "
        f"configured end and {METRICS_FILE} holds its final numbers{' and test' if cfg.get('test', True) else ''}. "
        f"Nothing was run or changed. To test it again, run python -m camexp.eval "
        f"ckpt_path={best} (it writes a run folder of its own); to train further, raise "
        f"trainer.max_epochs.{_other_settings(cfg, resume_from)}")
    return numbers


def _other_settings(cfg: DictConfig, checkpoint: str | Path) -> str:
    """A note when this command's model settings are not the finished run's (they were not used)."""
    try:
        stored = checkpoint_hyperparameters(checkpoint)
        configured = OmegaConf.to_container(cfg.model, resolve=True)
        # the constructor's arguments the module stores (not _target_, compile, channels_last)
        described = settings_that_differ(checkpoint, {k: v for k, v in configured.items() if k in stored})
    except Exception:  # no model group, an interpolation that does not resolve here
        return ""
    return (f" This command's model settings differ from the finished run's, and were not used: "
            f"{described}." if described else "")


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class FitMetrics(L.Callback):
    """Stores the numbers logged so far (``trainer.callback_metrics``) in every checkpoint;
    :attr:`restored` holds those of the checkpoint a run resumed from ({} otherwise)."""

    def __init__(self) -> None:
        self.restored: dict[str, float] = {}

    @override
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = _numbers(trainer.callback_metrics)

    @override
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(CHECKPOINT_KEY)
        self.restored = _numbers(stored) if isinstance(stored, dict) else {}

    def final(self, trainer: L.Trainer) -> dict[str, Any]:
        """The numbers of the training: those restored, updated with those logged since."""
        return {**self.restored, **dict(trainer.callback_metrics)}

"""One search trial: a training job that returns its val metric to the sweeper and records
itself in ``trial.json``; a diverged or crashed trial is recorded and raised as failed."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from camexp.core.errors import TrainingDiverged, UserError
from camexp.search.processes import TrialProcesses

TRIAL_FILE = "trial.json"

class TrialDiverged(RuntimeError):
    """A search trial diverged: raised to the sweeper, which records a failed trial."""

def objective_value(cfg: DictConfig, trainer: L.Trainer, metrics: dict[str, float]) -> float:
    """The val number of ``optimized_metric`` for the checkpoint that test would evaluate: the
    best epoch's when the checkpoint monitor is that metric, else the last epoch's."""
    name = cfg.optimized_metric
    checkpoint = trainer.checkpoint_callback
    if (checkpoint is not None and getattr(checkpoint, "monitor", None) == name
            and checkpoint.best_model_score is not None):
        return float(checkpoint.best_model_score)
    if name not in metrics:
        raise UserError(
            f"optimized_metric={name} was not logged by this run (logged: "
            f"{', '.join(sorted(k for k in metrics if k.startswith('val/')))}). Use a val metric "
            "of the split (val/MaxBoxAccV2 with boxes, val/PxAP with masks)."
        )
    return float(metrics[name])

def _job_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]

def write_trial(output_dir: str | Path, cfg: DictConfig, status: str, value: float | None,
                metrics: dict[str, float] | None = None, error: str | None = None) -> None:
    """``trial.json`` in the job's folder (main process only)."""
    if rank_zero_only.rank != 0:
        return
    record = {"objective": cfg.optimized_metric, "value": value, "status": status,
              "overrides": _job_overrides(),
              "val": {k: v for k, v in (metrics or {}).items() if k.startswith("val/")}}
    if error:
        record["error"] = error
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / TRIAL_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")

def run_trial(cfg: DictConfig, train: Callable[[DictConfig], dict[str, float]]) -> Any:
    """Run ``train(cfg)``. Without ``optimized_metric``: return its metrics. With it (a search
    job): record the trial and return the objective for the sweeper; a diverged or crashed
    trial is recorded, then raised to the sweeper, which counts it as failed and goes on."""
    if not cfg.get("optimized_metric"):
        return train(cfg)
    output_dir = cfg.paths.output_dir
    try:
        with TrialProcesses():  # a failed DDP trial must not end the search
            numbers = train(cfg)
    except TrainingDiverged as error:
        write_trial(output_dir, cfg, "diverged", None, error=str(error))
        print(f"camexp: trial diverged, recorded as failed: {error}")
        # not a UserError: the sweeper records the trial as failed and goes on (a NaN value
        # would be refused by hydra-optuna-sweeper 1.3's failure path)
        raise TrialDiverged(str(error)) from None
    except Exception as error:
        write_trial(output_dir, cfg, "failed", None, error=traceback.format_exc())
        raise error
    value = numbers.pop("_objective")
    write_trial(output_dir, cfg, "complete", value, numbers)
    return value

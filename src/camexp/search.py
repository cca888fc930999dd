"""The field's hyper-parameter search (``hparams_search=wsol|wsol_tpe``) around one training job.

``conf/hparams_search/`` runs Hydra's Optuna sweeper over the ranges of PAPER.md 4.5 (see
``docs/search.md``). This module is what the jobs and the sweep need beyond the sweeper:

- :func:`run_trial`: a job with ``optimized_metric`` set returns that val metric to the
  sweeper, and writes ``trial.json`` (value, status, overrides) in its folder. A diverged job
  (non-finite loss, weights or outputs: :class:`TrainingDiverged`) or a crashed one is recorded
  (``status``, ``error``) and raised to the sweeper, which records a failed trial and goes on
  (``max_failure_rate: 1.0``); a config mistake (any other ``UserError``) stops the search;
- :class:`DivergenceGuard`: the callback that stops a run whose loss is NaN or infinite, on
  every DDP process at the same step;
- :func:`has_patch_side`: HaS's patch side over the divisors of the crop size up to half of it;
- :class:`BestTrialPreset`: at the end of the sweep, writes the best trial's config as a ready
  experiment preset beside the sweep, ``trials.csv``, and the command that trains and tests it.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.experimental.callback import Callback as HydraCallback
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from camexp.errors import UserError

TRIAL_FILE = "trial.json"
PRESET_DIR = "best_trial"
PRESET_NAME = "best_trial"
# groups whose choice a preset repeats (hparams_search, debug and hydra/* are left out)
PRESET_GROUPS = ("data", "model", "method", "localization", "callbacks", "logger", "trainer", "paths")


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the hyper-parameters (often the learning rate)
    do not train this network."""


class TrialDiverged(RuntimeError):
    """A search trial diverged: raised to the sweeper, which records a failed trial."""


class DivergenceGuard(L.Callback):
    """Stop training at the first step whose loss is not finite on any process, or when the
    weights or the network's val outputs (logits, feature maps) are not finite.

    Every process takes the same decision (one all-reduce of a flag per step), so DDP ranks stop
    together instead of waiting for each other.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        bad = not bool(loss.detach().isfinite().all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise TrainingDiverged(self._message("train/loss is not finite", trainer, pl_module))

    def on_validation_start(self, trainer, pl_module) -> None:
        # the last steps of an epoch can blow the weights up after a finite loss: check them
        # once before they make maps (NaN maps would stop the run with a less clear message)
        params = [p.detach().isfinite().all() for p in pl_module.parameters()]
        bad = bool(params) and not bool(torch.stack(params).all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise TrainingDiverged(self._message("the weights are not finite", trainer, pl_module))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx: int = 0) -> None:
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


# Lightning's thread (lightning.fabric.strategies.launchers.subprocess_script) that SIGKILLs the
# main process and every DDP process as soon as one of them exits with a non-zero status
OBSERVER_THREAD = "child-process-observer"


def _observers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == OBSERVER_THREAD]


def spare_the_sweep(observer: threading.Thread) -> None:
    """Make Lightning's observer of a trial's DDP processes kill only those processes, not the
    sweep's (which is the trial's rank 0 and runs the next trials): rank 0 then fails in its
    next collective, and the trial is recorded as failed."""
    children = list(getattr(observer, "_child_processes", []))

    def kill_the_children() -> None:
        for process in children:
            if process.poll() is None:
                process.kill()

    observer._terminate_all = kill_the_children
    observer._camexp_spared = True


class TrialProcesses:
    """``with TrialProcesses(): train(cfg)`` around a search trial, in the sweep's process.

    Lightning starts the other DDP ranks of a trial as child processes, with a thread that
    SIGKILLs them all, and the main process, when one exits with a non-zero status. A failed
    or diverged trial makes its ranks exit non-zero, so that thread would kill the search (and
    leave the next trial's rank 1 waiting forever). Here a watcher tells each such thread to
    spare the sweep (:func:`spare_the_sweep`) as soon as it starts, and at the end of the trial
    the thread is stopped and the children get ``timeout_s`` to exit (they stop on their own: a
    divergence is decided on every rank at once) before they are killed (``killed`` counts
    them). Outside DDP there is no such thread and this does nothing.
    """

    def __init__(self, timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.killed = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            for observer in _observers():
                if not getattr(observer, "_camexp_spared", False):
                    spare_the_sweep(observer)

    def __enter__(self) -> TrialProcesses:
        self._watcher = threading.Thread(target=self._watch, name="camexp-trial-processes",
                                         daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        for observer in _observers():
            spare_the_sweep(observer)
            observer._run = lambda: True  # its next check ends it
            for process in getattr(observer, "_child_processes", []):
                try:
                    process.wait(timeout=self.timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    self.killed += 1


def has_patch_side(cfg: DictConfig, trial) -> None:
    """HaS's patch side (``method.grid_size``, pixels) over the divisors of the crop size up to
    half of it (PAPER.md 4.5), for ``custom_search_space`` of the Optuna sweeper."""
    crop = int(cfg.data.crop_size)
    sides = [d for d in range(1, crop // 2 + 1) if crop % d == 0]
    trial.suggest_categorical("method.grid_size", sides)


# -- the end of a sweep ---------------------------------------------------------------------


def read_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    """The ``trial.json`` of every job folder of a sweep, with its folder and job number,
    ordered by job number; jobs that wrote none (killed) are listed as ``unfinished``."""
    trials = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name)):
        path = job / TRIAL_FILE
        record = json.loads(path.read_text()) if path.is_file() else {"status": "unfinished"}
        trials.append({**record, "job": int(job.name), "dir": job})
    return trials


def best_trial(trials: list[dict[str, Any]], direction: str = "maximize") -> dict[str, Any] | None:
    """The complete trial with the best finite value (the lowest job number on ties)."""
    done = [t for t in trials if t.get("status") == "complete" and t.get("value") is not None
            and math.isfinite(float(t["value"]))]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * float(t["value"]), t["job"]))


def preset_text(trial: dict[str, Any], sweep_dir: Path) -> str:
    """The best trial as an experiment preset: the trial's group choices, then its whole
    composed config (so the preset does not depend on the presets or defaults it came from),
    with ``test: true``."""
    job = trial["dir"]
    config = OmegaConf.load(job / ".hydra" / "config.yaml")
    choices = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.runtime.choices
    config.test = True
    config.optimized_metric = None  # a single run, not a search job
    body = OmegaConf.to_yaml(config)
    groups = [g for g in PRESET_GROUPS if choices.get(g) is not None]
    header = [
        "# @package _global_",
        f"# The best trial (job {trial['job']}) of the search {sweep_dir}:",
        f"#   {trial['objective']} = {trial['value']} on the val split",
        f"#   overrides: {' '.join(trial.get('overrides') or [])}",
        "# Train it and test it once (the ledger counts test evaluations of this config):",
        f"#   {preset_command(sweep_dir)}",
        "defaults:",
        *(f"  - override /{g}: {choices[g]}" for g in groups),
        "",
    ]
    return "\n".join(header) + body


def preset_command(sweep_dir: Path) -> str:
    return (f"python -m camexp.train --config-dir {sweep_dir / PRESET_DIR} "
            f"experiment={PRESET_NAME}")


def write_trials_csv(trials: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["job", "status", "objective", "value", "overrides"])
        for t in trials:
            writer.writerow([t["job"], t.get("status"), t.get("objective", ""),
                             "" if t.get("value") is None else t["value"],
                             " ".join(t.get("overrides") or [])])


def finish_search(sweep_dir: str | Path, direction: str = "maximize") -> Path | None:
    """Write ``trials.csv`` and, when a trial completed, ``best_trial/experiment/best_trial.yaml``
    in the sweep folder; return the preset's path (None when every trial failed)."""
    sweep_dir = Path(sweep_dir).resolve()
    trials = read_trials(sweep_dir)
    write_trials_csv(trials, sweep_dir / "trials.csv")
    best = best_trial(trials, direction)
    failed = sum(t.get("status") != "complete" for t in trials)
    if best is None:
        print(f"camexp: no trial of {sweep_dir} completed ({failed} failed or diverged; see "
              f"{sweep_dir / 'trials.csv'} and each trial's trial.json for why); no preset "
              "written. Narrow the ranges (a lower model.optim.lr) or fix the error, then search again.")
        return None
    preset = sweep_dir / PRESET_DIR / "experiment" / f"{PRESET_NAME}.yaml"
    preset.parent.mkdir(parents=True, exist_ok=True)
    preset.write_text(preset_text(best, sweep_dir))
    print(f"camexp: best trial: job {best['job']}, {best['objective']} = {best['value']} "
          f"({len(trials) - failed} of {len(trials)} trials completed). Preset: {preset}\n"
          f"Train it and test it once: {preset_command(sweep_dir)}")
    return preset


# the search of this process (set when it starts), for the message when no trial completed
_SEARCH: dict[str, str] = {}


class BestTrialPreset(HydraCallback):
    """Hydra callback of ``hparams_search``: after the last trial, write the best one's preset."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _SEARCH.update(dir=str(config.hydra.sweep.dir),
                       direction=str(config.hydra.sweeper.get("direction", "maximize")))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        direction = str(config.hydra.sweeper.get("direction", "maximize"))
        finish_search(config.hydra.sweep.dir, direction)


def exit_if_no_trial_completed(error: BaseException) -> None:
    """hydra-optuna-sweeper ends a search in which every trial failed with optuna's
    ``ValueError: No trials are completed yet.`` (and a traceback): write ``trials.csv``, say
    so in one paragraph (:func:`finish_search`) and exit 1 instead."""
    if not (isinstance(error, ValueError) and "No trials are completed yet" in str(error)
            and _SEARCH):
        return
    finish_search(_SEARCH["dir"], _SEARCH["direction"])
    sys.exit(1)

"""``python -m camexp.train``: fit a CAM classifier, test it, draw its maps (Hydra entry)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from camexp.config.validate import check_trainable, unknown_key_hint
from camexp.core.errors import exit_on_user_error, run_cli
from camexp.core.messages import say
from camexp.runs.checkpoints import (
    check_resume_compatible,
    exit_interrupted,
    exit_preempted,
    resolve_resume,
    stopped_by_ctrl_c,
)
from camexp.runs.finished import FitMetrics, finished_numbers
from camexp.runs.folder import RunFolder, hydra_record
from camexp.runs.job import build_trainer, finish_run, one_job, prepare_data
from camexp.runs.ledger import evaluation_settings, record_test_evaluation, weights_digest
from camexp.runs.loggers import trim_csv_log
from camexp.runs.settings import RunSettings
from camexp.runs.start import start_run
from camexp.search.results import exit_if_no_trial_completed
from camexp.search.trials import TRIAL_FILE, objective_value, run_trial


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (unless ``train=false``) then test the best checkpoint; returns all final metrics.

    ``resume=auto`` continues from the checkpoint of the run folder furthest in training,
    ``ckpt_path=`` from a given one. A SIGTERM/SIGUSR1 (preemption) in any stage exits with
    status 75 (``SystemExit``), after saving ``checkpoints/preempted.ckpt`` while fitting.
    The run folder is locked for the run (:class:`camexp.runs.folder.RunFolder`). A test
    evaluation is counted in the test ledger (``test_record.json``). In a search job
    (``optimized_metric`` set) the metrics also carry ``_objective``, the sweeper's value.
    """
    with RunFolder(cfg.paths.output_dir, record=hydra_record(cfg)) as folder:
        check_trainable(cfg)
        return _train(cfg, folder)


def _train(cfg: DictConfig, folder: RunFolder) -> dict[str, float]:
    checkpoint_dir = Path(cfg.paths.output_dir) / "checkpoints"
    training = cfg.get("train", True)
    resume_from = (resolve_resume(cfg.get("resume"), cfg.get("ckpt_path"), checkpoint_dir)
                   if training else None)
    if resume_from and cfg.get("resume") == "auto" and not cfg.get("ckpt_path"):
        finished = finished_numbers(cfg, resume_from)
        if finished is not None:  # left alone: not even this start's Hydra record stays
            folder.unchanged()
            if cfg.get("optimized_metric"):
                finished["_objective"] = _stored_objective(cfg, finished)
            return finished
    start_run(cfg)
    datamodule = prepare_data(cfg)
    model = instantiate(cfg.model, _convert_="all")
    trainer = build_trainer(cfg)
    trainer.callbacks.append(RunSettings.from_config(cfg))  # what eval reuses
    fit_metrics = FitMetrics()  # the training's numbers travel in the checkpoints
    trainer.callbacks.append(fit_metrics)

    try:
        if training:
            if resume_from:
                check_resume_compatible(resume_from, model)
                if trainer.is_global_zero:
                    trim_csv_log(Path(cfg.paths.output_dir) / "csv" / "metrics.csv", resume_from)
            folder.started()
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        else:
            folder.started()
        # a training resumed at its end (its test was stopped) logs nothing: its numbers come
        # from the checkpoint, so metrics.json keeps them
        metrics = fit_metrics.final(trainer)
        tested = bool(cfg.get("test", True))
        best = ""
        if tested:
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
            metrics.update(trainer.callback_metrics)
    except SIGTERMException:
        fitting = trainer.state.fn == "fit" or not trainer.state.fn
        exit_preempted(trainer, f"saved {checkpoint_dir / 'preempted.ckpt'}" if fitting else
                       f"stopped during the test; training is complete in {checkpoint_dir}")
    except SystemExit as stop:  # Lightning ends a Ctrl-C with sys.exit(1)
        if not stopped_by_ctrl_c(stop):
            raise
        fitting = trainer.state.fn == "fit"
        exit_interrupted(f"the checkpoints written so far are in {checkpoint_dir}" if fitting else
                         f"stopped during the test; training is complete in {checkpoint_dir}",
                         trainer.is_global_zero)
    numbers = finish_run(trainer, metrics, cfg.paths.output_dir)  # first: the numbers are kept
    if tested and trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        # the weights tested: the best epoch's, loaded by the test
        record_test_evaluation(cfg, cfg.paths.log_dir, cfg.paths.output_dir, "train",
                               weights_digest(model.state_dict()), evaluation_settings(cfg),
                               tested=best or None)
    elif tested and trainer.is_global_zero:
        say("camexp: debug=fdr (fast_dev_run): a one-batch check, not counted in the test ledger.")
    if cfg.get("optimized_metric"):
        numbers["_objective"] = objective_value(cfg, trainer, numbers)
    return numbers


def _stored_objective(cfg: DictConfig, numbers: dict[str, float]) -> float:
    """A finished search trial's objective: the value its ``trial.json`` recorded, else the
    metric in its ``metrics.json``."""
    import json

    try:
        trial = json.loads((Path(cfg.paths.output_dir) / TRIAL_FILE).read_text())
        if trial.get("status") == "complete" and trial.get("value") is not None:
            return float(trial["value"])
    except (OSError, ValueError, AttributeError):
        pass
    return float(numbers[cfg.optimized_metric])


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # a search job returns its objective to the sweeper (hparams_search=...); others None
    with one_job():
        result = exit_on_user_error(lambda: run_trial(cfg, train))
    return result if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    try:
        run_cli(main, lambda text: unknown_key_hint(text, "train", sys.argv[1:]))
    except ValueError as error:  # a search in which no trial completed
        exit_if_no_trial_completed(error)
        raise

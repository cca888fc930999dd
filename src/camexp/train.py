"""``python -m camexp.train``: fit a CAM classifier, test it, draw its maps (Hydra entry)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from camexp.checkpointing import PREEMPTED_EXIT_CODE, requeue_slurm_job, resolve_resume
from camexp.errors import exit_on_user_error
from camexp.ledger import record_test_evaluation
from camexp.run import build_trainer, finish_run, one_job, prepare_data
from camexp.run_info import start_run
from camexp.search import objective_value, run_trial


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (unless ``train=false``) then test the best checkpoint; returns all final metrics.

    ``resume=auto`` continues from the newest readable checkpoint of the run folder,
    ``ckpt_path=`` from a given one. A SIGTERM/SIGUSR1 (preemption) saves
    ``checkpoints/preempted.ckpt`` and exits with status 75 (``SystemExit``). A test
    evaluation is counted in the test ledger (``test_record.json``). In a search job
    (``optimized_metric`` set) the metrics also carry ``_objective``, the sweeper's value.
    """
    start_run(cfg)
    datamodule = prepare_data(cfg)
    model = instantiate(cfg.model, _convert_="all")
    trainer = build_trainer(cfg)

    if cfg.get("train", True):
        checkpoint_dir = Path(cfg.paths.output_dir) / "checkpoints"
        resume_from = resolve_resume(cfg.get("resume"), cfg.get("ckpt_path"), checkpoint_dir)
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        except SIGTERMException:
            if trainer.is_global_zero:
                print(f"camexp: preempted; saved {checkpoint_dir / 'preempted.ckpt'}. Re-run the "
                      "same command with resume=auto (and hydra.run.dir=<this run folder>).")
                requeued = requeue_slurm_job()
                if requeued:
                    print(f"camexp: {requeued}")
            raise SystemExit(PREEMPTED_EXIT_CODE) from None
    metrics = dict(trainer.callback_metrics)
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(trainer.callback_metrics)
        if trainer.is_global_zero:
            record_test_evaluation(cfg, cfg.paths.log_dir, cfg.paths.output_dir, "train")
    numbers = finish_run(trainer, metrics, cfg.paths.output_dir)
    if cfg.get("optimized_metric"):
        numbers["_objective"] = objective_value(cfg, trainer, numbers)
    return numbers


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # a search job returns its objective to the sweeper (hparams_search=...); others None
    with one_job():
        result = exit_on_user_error(lambda: run_trial(cfg, train))
    return result if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()

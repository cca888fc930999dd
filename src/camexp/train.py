"""``python -m camexp.train``: fit a CAM classifier, test it, draw its maps (Hydra entry)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from camexp.checkpointing import PREEMPTED_EXIT_CODE, requeue_slurm_job, resolve_resume
from camexp.errors import exit_on_user_error
from camexp.messages import say
from camexp.run import build_trainer, finish_run, one_job, prepare_data
from camexp.run_settings import RunSettings


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (unless ``train=false``) then test the best checkpoint; returns all final metrics.

    ``resume=auto`` continues from the newest readable checkpoint of the run folder,
    ``ckpt_path=`` from a given one. A SIGTERM/SIGUSR1 (preemption) saves
    ``checkpoints/preempted.ckpt`` and exits with status 75 (``SystemExit``).
    """
    datamodule = prepare_data(cfg)
    model = instantiate(cfg.model, _convert_="all")
    trainer = build_trainer(cfg)
    trainer.callbacks.append(RunSettings.from_config(cfg))  # what eval reuses

    if cfg.get("train", True):
        checkpoint_dir = Path(cfg.paths.output_dir) / "checkpoints"
        resume_from = resolve_resume(cfg.get("resume"), cfg.get("ckpt_path"), checkpoint_dir)
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        except SIGTERMException:
            if trainer.is_global_zero:
                say(f"camexp: preempted; saved {checkpoint_dir / 'preempted.ckpt'}. Re-run the "
                    "same command with resume=auto (and hydra.run.dir=<this run folder>).")
                requeued = requeue_slurm_job()
                if requeued:
                    say(f"camexp: {requeued}")
            raise SystemExit(PREEMPTED_EXIT_CODE) from None
    metrics = dict(trainer.callback_metrics)
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(trainer.callback_metrics)
    return finish_run(trainer, metrics, cfg.paths.output_dir)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    with one_job():
        exit_on_user_error(lambda: train(cfg))


if __name__ == "__main__":
    main()

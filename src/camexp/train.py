"""``python -m camexp.train``: fit a CAM classifier, test it, draw its maps (Hydra entry)."""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from camexp.errors import exit_on_user_error
from camexp.run import build_trainer, finish_run, prepare_data


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (unless ``train=false``) then test the best checkpoint; returns all final metrics."""
    datamodule = prepare_data(cfg)
    model = instantiate(cfg.model, _convert_="all")
    trainer = build_trainer(cfg)

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = dict(trainer.callback_metrics)
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(trainer.callback_metrics)
    return finish_run(trainer, metrics, cfg.paths.output_dir)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(lambda: train(cfg))


if __name__ == "__main__":
    main()

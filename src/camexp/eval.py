"""``python -m camexp.eval ckpt_path=...``: test a checkpoint with the same configs."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from camexp.config import validate
from camexp.errors import UserError, exit_on_user_error
from camexp.module import CAMClassifier
from camexp.run import build_trainer, save_metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint's model (its own hyper-parameters) on the configured test split."""
    validate(cfg)
    ckpt_path = Path(cfg.ckpt_path).expanduser()
    if not ckpt_path.is_file():
        raise UserError(
            f"Checkpoint {ckpt_path} does not exist. Pass ckpt_path= a .ckpt file written by "
            "camexp.train (its run folder's checkpoints/last.ckpt or the best epoch_*.ckpt)."
        )
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.check()
    # The network is rebuilt from the checkpoint's hyper-parameters; its weights come from
    # the checkpoint, so nothing is downloaded or read from the original weights_path.
    model = CAMClassifier.load_from_checkpoint(
        ckpt_path, map_location="cpu", pretrained=False, weights_path=None, weights_only=True
    )
    if model.hparams.num_classes != datamodule.num_classes:
        raise UserError(
            f"{ckpt_path} was trained for {model.hparams.num_classes} classes but "
            f"data.num_classes={datamodule.num_classes}. Evaluate it on the dataset it was "
            "trained on (data=...)."
        )
    trainer = build_trainer(cfg)
    trainer.test(model, datamodule=datamodule)
    numbers = save_metrics(trainer.callback_metrics, Path(cfg.paths.output_dir) / "metrics.json")
    if trainer.is_global_zero:
        print(f"Run folder: {Path(cfg.paths.output_dir).resolve()}")
    return numbers


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(lambda: evaluate(cfg))


if __name__ == "__main__":
    main()

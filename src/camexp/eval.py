"""``python -m camexp.eval ckpt_path=...``: test a checkpoint with the same configs."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from camexp.core.errors import UserError, exit_on_user_error, run_cli
from camexp.modules.cam_classifier import CAMClassifier
from camexp.runs.folder import RunFolder
from camexp.runs.job import build_trainer, finish_run, one_job, prepare_data, test_or_exit_preempted
from camexp.runs.ledger import record_test_evaluation
from camexp.runs.settings import apply_training_settings
from camexp.runs.start import start_run

TORCHVISION_TARGET = "camexp.modules.torchvision_classifier.TorchvisionClassifier"
# classifiers evaluated as they are (no checkpoint): model=torchvision, model=timm
AS_THEY_ARE = (TORCHVISION_TARGET, "camexp.modules.timm_classifier.TimmClassifier")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint's model (its own hyper-parameters) on the test split of the data it was
    trained on (the training run's data and localization settings, unless overridden);
    with ``model=torchvision`` or ``model=timm``, that library's classifier as it is (no
    checkpoint)."""
    if cfg.get("model") is not None and cfg.model.get("_target_") in AS_THEY_ARE:
        datamodule = prepare_data(cfg)
        from hydra.utils import get_class

        options = OmegaConf.to_container(cfg.model, resolve=True)
        classifier = get_class(options.pop("_target_"))
        model = classifier(**options)  # not hydra's instantiate: errors stay UserErrors
        trainer = build_trainer(cfg)
        trainer.test(model, datamodule=datamodule)
        return finish_run(trainer, trainer.callback_metrics, cfg.paths.output_dir)
    if cfg.get("ckpt_path") is None:
        raise UserError(
            "camexp.eval needs ckpt_path=<run>/checkpoints/last.ckpt (a camexp.train checkpoint), "
            "or model=torchvision|timm model.name=<classifier> to test one of torchvision's or timm's."
        )
    ckpt_path = Path(cfg.ckpt_path).expanduser()
    if not ckpt_path.is_file():
        raise UserError(
            f"Checkpoint {ckpt_path} does not exist. Pass ckpt_path= a .ckpt file written by "
            "camexp.train (its run folder's checkpoints/last.ckpt or the best epoch_*.ckpt)."
        )
    start_run(cfg, tags_required=False)  # threshold sweeps of one checkpoint need no tags
    # the training run's data and localization settings, unless overridden here (printed)
    apply_training_settings(cfg, ckpt_path)
    datamodule = prepare_data(cfg)
    # The network is rebuilt from the checkpoint's hyper-parameters; its weights come from
    # the checkpoint, so nothing is downloaded or read from the original weights_path.
    try:
        model = CAMClassifier.load_from_checkpoint(
            ckpt_path, map_location="cpu", pretrained=False, weights_path=None, weights_only=True
        )
    except Exception as error:  # truncated file, foreign pickle, other architecture
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"Cannot load checkpoint {ckpt_path}: {first_line}. Pass a complete .ckpt written by "
            "camexp.train; files holding objects other than tensors and plain values are refused."
        ) from error
    if model.hparams.num_classes != datamodule.num_classes:
        raise UserError(
            f"{ckpt_path} was trained for {model.hparams.num_classes} classes but "
            f"data.num_classes={datamodule.num_classes}. Evaluate it on the dataset it was "
            "trained on (data=...)."
        )
    trainer = build_trainer(cfg)
    test_or_exit_preempted(trainer, model, datamodule)
    if trainer.is_global_zero:
        # counted for the config that trained the checkpoint (its run folder), when known
        trained = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
        tested = OmegaConf.load(trained) if trained.is_file() else cfg
        record_test_evaluation(tested, cfg.paths.log_dir, cfg.paths.output_dir, "eval")
    return finish_run(trainer, trainer.callback_metrics, cfg.paths.output_dir)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with one_job():
        exit_on_user_error(lambda: _locked(cfg))


def _locked(cfg: DictConfig) -> dict[str, float]:
    """``evaluate`` holding the run folder's lock (one run per folder)."""
    with RunFolder(cfg.paths.output_dir) as folder:
        folder.started()
        return evaluate(cfg)


if __name__ == "__main__":
    run_cli(main)

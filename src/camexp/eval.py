"""``python -m camexp.eval ckpt_path=...``: test a checkpoint with the same configs."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from camexp.config.validate import TORCHVISION_MODEL, unknown_key_hint
from camexp.core.errors import UserError, exit_on_user_error, run_cli
from camexp.core.messages import say
from camexp.modules.cam_classifier import CAMClassifier
from camexp.runs.checkpoints import (
    checkpoint_hyperparameters,
    eval_checkpoint_problem,
    same_setting,
    tested_checkpoint,
)
from camexp.runs.folder import RunFolder, hydra_record
from camexp.runs.job import build_trainer, finish_run, one_job, prepare_data, test_or_exit_preempted
from camexp.runs.ledger import evaluation_settings, record_test_evaluation, weights_digest
from camexp.runs.settings import apply_training_settings
from camexp.runs.start import start_run

TORCHVISION_TARGET = TORCHVISION_MODEL
# classifiers evaluated as they are (no checkpoint): model=torchvision, model=timm
AS_THEY_ARE = (TORCHVISION_TARGET, "camexp.modules.timm_classifier.TimmClassifier")


def evaluate(cfg: DictConfig, folder: RunFolder | None = None) -> dict[str, float]:
    """Test the checkpoint's model (its own hyper-parameters) on the test split of the data it was
    trained on (the training run's data and localization settings, unless overridden);
    with ``model=torchvision`` or ``model=timm``, that library's classifier as it is (no
    checkpoint). ``folder``:
    the run folder, marked started just before the test (a failure before it is a failed
    start)."""
    start_run(cfg)  # the tags of a sweep, the config tree (print_config)
    if cfg.get("model") is not None and cfg.model.get("_target_") in AS_THEY_ARE:
        datamodule = prepare_data(cfg)
        from hydra.utils import get_class

        options = OmegaConf.to_container(cfg.model, resolve=True)
        classifier = get_class(options.pop("_target_"))
        model = classifier(**options)  # not hydra's instantiate: errors stay UserErrors
        trainer = build_trainer(cfg)
        if folder is not None:
            folder.started()
        trainer.test(model, datamodule=datamodule)
        return finish_run(trainer, trainer.callback_metrics, cfg.paths.output_dir)
    if cfg.get("ckpt_path") is None:
        raise UserError(
            "camexp.eval needs ckpt_path=<run folder of camexp.train> (the checkpoint that run "
            "tested) or a checkpoint file (<run>/checkpoints/epoch_NNN.ckpt), or model=torchvision|timm "
            "model.name=<classifier> to test one of torchvision's or timm's."
        )
    ckpt_path = checkpoint_to_test(cfg)
    # a text file, a plain state dict, a foreign pickle, a truncated file: what it is, in words
    problem = eval_checkpoint_problem(ckpt_path)
    if problem:
        raise UserError(problem)
    # the test is counted for the config that trained the checkpoint (its run folder), when
    # known: read first, so a damaged file costs no evaluation
    trained = training_record(ckpt_path)
    check_method(cfg, ckpt_path)
    # the training run's data and localization settings, unless overridden here (printed)
    apply_training_settings(cfg, ckpt_path)
    datamodule = prepare_data(cfg)
    # The network is rebuilt from the checkpoint's hyper-parameters; its weights come from
    # the checkpoint, so nothing is downloaded or read from the original weights_path.
    try:
        model = CAMClassifier.load_from_checkpoint(
            ckpt_path, map_location="cpu", pretrained=False, weights_path=None, weights_only=True
        )
    except Exception as error:  # of another architecture
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
    if folder is not None:
        folder.started()
    test_or_exit_preempted(trainer, model, datamodule)
    numbers = finish_run(trainer, trainer.callback_metrics, cfg.paths.output_dir)  # first: kept
    if trainer.is_global_zero:
        if cfg.trainer.get("fast_dev_run"):
            say("camexp: debug=fdr (fast_dev_run): a one-batch check, not counted in the test ledger.")
        else:
            record_test_evaluation(trained or cfg, cfg.paths.log_dir, cfg.paths.output_dir, "eval",
                                   weights_digest(model.state_dict()), evaluation_settings(cfg),
                                   tested=ckpt_path)
    return numbers


def checkpoint_to_test(cfg: DictConfig) -> Path:
    """The checkpoint file of ``ckpt_path=``: the file, or for a training run's folder the
    checkpoint that run tested (named, and put in ``cfg.ckpt_path``)."""
    ckpt_path = Path(cfg.ckpt_path).expanduser()
    if ckpt_path.is_dir():
        found, how = tested_checkpoint(ckpt_path)
        say(f"camexp: ckpt_path={cfg.ckpt_path} is a run folder: evaluating {found}, {how}.")
        with open_dict(cfg):
            cfg.ckpt_path = str(found)
        return found
    if not ckpt_path.is_file():
        raise UserError(
            f"Checkpoint {ckpt_path} does not exist (no file or folder of that name). Pass "
            "ckpt_path= a camexp.train run folder (the checkpoint that run tested) or one of its "
            "checkpoints (<run>/checkpoints/epoch_NNN.ckpt or last.ckpt)."
        )
    return ckpt_path


CAM_METHOD = {"_target_": "camexp.methods.CAM"}


def check_method(cfg: DictConfig, ckpt_path: Path) -> None:
    """A ``method`` in the eval config (``+method=...``) must be the checkpoint's own: the
    network and its maps come from the checkpoint's method, and the eval's record must not
    name another one."""
    if cfg.get("method") is None:
        return
    try:
        stored = checkpoint_hyperparameters(ckpt_path).get("method") or CAM_METHOD
    except Exception:  # unreadable: load_from_checkpoint reports it with the fix
        return
    asked = OmegaConf.to_container(cfg.method, resolve=True) or CAM_METHOD
    keys = [key for key in sorted(set(stored) | set(asked))
            if not same_setting(key, stored.get(key, "<unset>"), asked.get(key, "<unset>"))]
    if not keys:  # the same settings (a class's former and present names are the same)
        return
    differ = ", ".join(f"method.{key}: {stored.get(key, '<unset>')!r} in the checkpoint, "
                       f"{asked.get(key, '<unset>')!r} asked" for key in keys)
    raise UserError(
        f"{ckpt_path} was trained with another method than the one this eval asks for ({differ}). "
        "camexp.eval evaluates a checkpoint with the method it was trained with (its network and "
        "its maps are that method's): drop the +method=... override (the run's record then names "
        "the checkpoint's method), or pass a checkpoint trained with the method you want."
    )


def training_record(ckpt_path: Path) -> DictConfig | None:
    """The Hydra config of the run that wrote ``ckpt_path`` (its ``.hydra/config.yaml``), None
    when it has none; a file that cannot be read stops the evaluation before the test."""
    trained = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not trained.is_file():
        return None
    try:
        loaded = OmegaConf.load(trained)
    except Exception as error:  # YAML syntax, undecodable bytes, unreadable file
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(
            f"{trained}, the Hydra record of the run that trained {ckpt_path.name}, cannot be "
            f"read ({reason}); camexp.eval counts its test evaluation in the test ledger under "
            "that run's config. Restore the file from a copy of the run folder, or move it out "
            "of .hydra/ to count the evaluation under this eval's own config. Nothing was tested."
        ) from None
    if not isinstance(loaded, DictConfig):
        raise UserError(
            f"{trained}, the Hydra record of the run that trained {ckpt_path.name}, holds no "
            "config (not a YAML mapping). Restore the file from a copy of the run folder, or "
            "move it out of .hydra/. Nothing was tested.")
    return loaded


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with one_job():
        exit_on_user_error(lambda: _locked(cfg))


def _locked(cfg: DictConfig) -> dict[str, float]:
    """``evaluate`` holding the run folder's lock (one run per folder)."""
    with RunFolder(cfg.paths.output_dir, record=hydra_record(cfg)) as folder:
        return evaluate(cfg, folder)


if __name__ == "__main__":
    run_cli(main, lambda text: unknown_key_hint(text, "eval", sys.argv[1:]))

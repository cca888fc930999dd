"""What train and eval share: build the trainer from the config, save the metrics."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, open_dict

from camexp.callbacks.health import run_warnings
from camexp.config.validate import validate
from camexp.core.messages import say, silence_framework_notices, summary_line


def quiet_framework_notices() -> None:
    """Hide what Lightning says that means nothing to a camexp user, where the trainer is built
    (not at import: importing camexp changes no warning filter): two warnings, that the
    module's on_after_batch_transfer (uint8 batches normalized on the device) wins over the
    DataModule's, as meant, and that Lightning 2.6 calls a torch 2.14 pytree API torch marks
    deprecated; and the notices of :func:`silence_framework_notices`. Idempotent."""
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    silence_framework_notices()


def instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a config group (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def keep_ddp_processes_in_this_job() -> None:
    """Make Lightning's extra DDP processes join this job, not start a sweep of their own.

    Lightning starts ranks 1..n-1 by re-running ``sys.argv`` with ``hydra.run.dir`` set to
    the run directory. In a Hydra multirun job ``sys.argv`` is the whole sweep (``-m`` and
    every value), so each extra process would run the sweep again in a new folder. Here they
    get this job's own overrides, and its output folder as their run directory.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *config_flags(sys.argv[1:]), *hydra_cfg.overrides.task]
    OmegaConf.set_readonly(hydra_cfg, False)
    with open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


CONFIG_FLAGS = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp")


def config_flags(argv: list[str]) -> list[str]:
    """The flags of ``argv`` that choose the primary config (``--config-dir``, ``-cn`` ...):
    the extra DDP processes must compose the same config as this job."""
    kept, take_next = [], False
    for arg in argv:
        if take_next:
            kept.append(arg)
            take_next = False
        elif arg in CONFIG_FLAGS:
            kept.append(arg)
            take_next = True
        elif arg.split("=", 1)[0] in CONFIG_FLAGS:
            kept.append(arg)
    return kept


DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def one_job() -> Iterator[None]:
    """Leave no distributed state (and no open W&B run) behind a job, so the next job of a
    multirun starts clean.

    Lightning's DDP launcher writes the rank variables into this process's environment and
    keeps the process group alive: the next job would think its processes were started
    externally and wait for peers that have exited.
    """
    saved = {key: os.environ.get(key) for key in DDP_ENVIRONMENT}
    try:
        yield
    finally:
        # a W&B run left open would take the next job's logs (jobs of a sweep share the process)
        wandb = sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_trainer(cfg: DictConfig) -> L.Trainer:
    quiet_framework_notices()
    keep_ddp_processes_in_this_job()
    return instantiate(
        cfg.trainer,
        callbacks=instantiate_group(cfg.get("callbacks")),
        logger=instantiate_group(cfg.get("logger")) or False,
    )


def prepare_data(cfg: DictConfig) -> L.LightningDataModule:
    """Validate the config, seed everything, and build the DataModule, checking its dataset is
    there before any (slow) model is built."""
    validate(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.check()
    tables = getattr(datamodule, "tables", None)
    if tables is not None and rank_zero_only.rank == 0:  # (synthetic data: checked once written)
        splits = ", ".join(f"{name} {len(split)}" for name, split in tables.splits.items())
        say(f"camexp: data checked: {tables.description}: {len(tables.class_names)} classes, "
            f"images {splits}.")
    if cfg.data.get("num_classes") is None:  # counted from the dataset (CUB: classes.txt)
        with open_dict(cfg):
            cfg.data.num_classes = datamodule.num_classes
    return datamodule


def finish_run(trainer: L.Trainer, metrics: dict, output_dir: str | Path) -> dict[str, float]:
    """Write the final metrics as ``metrics.json`` (the numbers, for reports that need no
    logger, and a ``"warnings"`` list: signs of a collapsed run) from the main process, print
    the metrics summary, the warnings and the run folder, and return the numbers."""
    numbers = {key: float(value) for key, value in sorted(metrics.items())}
    output_dir = Path(output_dir)
    found = run_warnings(trainer, numbers)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps({**numbers, "warnings": found}, indent=2) + "\n")
        line = summary_line(numbers)
        if line:
            say(line)
        for warning in found:
            say(f"camexp: WARNING: {warning}", logging.WARNING)
        say(f"Run folder: {output_dir.resolve()}")
    return numbers


def test_or_exit_preempted(trainer: L.Trainer, model: L.LightningModule,
                           datamodule: L.LightningDataModule) -> None:
    """``trainer.test``; a SIGTERM/SIGUSR1 during it requeues the SLURM job and exits 75."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from camexp.runs.checkpoints import exit_interrupted, exit_preempted, stopped_by_ctrl_c

    try:
        trainer.test(model, datamodule=datamodule)
    except SIGTERMException:
        exit_preempted(trainer, "stopped during the test, nothing to save")
    except SystemExit as stop:  # Lightning ends a Ctrl-C with sys.exit(1)
        if not stopped_by_ctrl_c(stop):
            raise
        exit_interrupted("stopped during the test, nothing was written", trainer.is_global_zero)

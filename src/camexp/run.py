"""What train and eval share: build the trainer from the config, save the metrics."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from camexp.config import validate

# Two notices that say nothing to a camexp user: the module's on_after_batch_transfer (uint8
# batches normalized on the device) is meant to win over the DataModule's, and Lightning 2.6
# calls a torch 2.14 pytree API that torch marks deprecated.
warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a config group (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def build_trainer(cfg: DictConfig) -> L.Trainer:
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
    return datamodule


def finish_run(trainer: L.Trainer, metrics: dict, output_dir: str | Path) -> dict[str, float]:
    """Write the final metrics as ``metrics.json`` (numbers only, for reports that need no
    logger) from the main process, print the run folder, and return the numbers."""
    numbers = {key: float(value) for key, value in sorted(metrics.items())}
    output_dir = Path(output_dir)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps(numbers, indent=2) + "\n")
        print(f"Run folder: {output_dir.resolve()}")
    return numbers

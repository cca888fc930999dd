"""``python -m camexp.write_metadata data=... out=...``: the field's metadata folder of a
CUB-layout or the synthetic dataset (:mod:`camexp.data.export`), for ``camexp.eval_maps`` and
other codebases.

Exit status: 0 when written, 2 when the dataset cannot be read or the options are wrong (one
paragraph naming the file and the fix).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from camexp.config.validate import unknown_key_hint
from camexp.core.errors import DatasetError, exit_on_user_error, run_cli
from camexp.data.datamodule import CUBDataModule
from camexp.data.export import write_metadata
from camexp.runs.start import print_config_tree


def write(cfg: DictConfig) -> dict[str, int]:
    """Read the configured dataset's splits as a run would and write ``cfg.out``; returns the
    images written per split."""
    print_config_tree(cfg)
    if OmegaConf.is_missing(cfg, "out"):
        raise DatasetError("out is not set. Run: python -m camexp.write_metadata data=cub "
                           "data.root=<dataset> out=<metadata folder to write>")
    datamodule = instantiate(cfg.data, _convert_="all")
    if not isinstance(datamodule, CUBDataModule):
        raise DatasetError(
            f"data={cfg.data._target_.rsplit('.', 1)[-1]}: write_metadata writes the metadata of "
            "CUB-layout datasets (data=cub) and the synthetic data; ImageNet and OpenImages come "
            "with the field's metadata folders (wsolevaluation), which camexp reads with "
            "data.split=wsol.")
    datamodule.prepare_data()
    tables = datamodule.load_tables()
    out = Path(str(cfg.out)).expanduser()
    localization = str(cfg.get("annotations", "boxes"))
    written = write_metadata(tables, out, list(cfg.splits), localization, datamodule.masks_for)
    counts = ", ".join(f"{name} {n}" for name, n in written.items())
    masks = f" mask_root={out}" if localization == "masks" else ""
    height, width = (int(v) for v in cfg.data.eval_size)
    print(f"camexp: wrote the metadata of {tables.description} to {out} ({counts} images; "
          f"localization.txt holds the {localization}). Score a run's saved maps "
          f"(save_maps=[val,test]) as the run did: python -m camexp.eval_maps "
          f"maps_dir=<run>/maps/test metadata_dir={out} split=test image_size=[{height},{width}]"
          f"{masks}")
    return written


@hydra.main(version_base="1.3", config_path="../../conf", config_name="write_metadata")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(lambda: write(cfg))


if __name__ == "__main__":
    run_cli(main, lambda text: unknown_key_hint(text, "write_metadata", sys.argv[1:]))

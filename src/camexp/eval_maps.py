"""Evaluate saved score maps against a WSOL metadata split (docs/protocol.md).

Usage::

    python -m camexp.eval_maps maps_dir=... metadata_dir=... split=test [output=...]

Score maps are ``.npy`` files, one per image id, at ``maps_dir/<image_id>.npy`` (the image id is
the relative path of ``image_ids.txt``, e.g.
``maps_dir/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg.npy``): 2-D, any size,
values in ``[0, 1]``. Each map is resized to ``image_size`` (bicubic) and min-max normalized.
Ground-truth boxes are scaled from ``image_sizes.txt`` to ``image_size`` and floored (when
that file is empty, as the field ships some, the sizes are read from the headers of the images
under ``image_root``; PxAP needs no sizes). Image ids and mask paths must stay inside their
folders (no ``..``, not absolute). ``.npy`` files not named by the split are counted
(``extra_maps``), not read.

The result JSON holds ``MaxBoxAcc`` (V1), ``MaxBoxAccV2`` and ``MaxBoxAccV2_IoU<t>`` per IoU
threshold, the best thresholds, ``num_images``, and ``PxAP`` when ``localization.txt`` lists masks
(OpenImages style; masks are read from ``mask_root``).

Bad input stops the run with one paragraph on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from camexp.config.validate import unknown_key_hint
from camexp.core.errors import BoxError, EvalMapsError, MapError, MetadataError, PxAPError, run_cli
from camexp.localization.offline import evaluate_maps, write_result
from camexp.runs.start import print_config_tree

#: Errors reported as one paragraph with exit code 2 (no traceback).
INPUT_ERRORS = (EvalMapsError, MetadataError, MapError, BoxError, PxAPError)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate with a composed ``eval_maps`` config and write ``cfg.output`` (if not null)."""
    print_config_tree(cfg)
    for key in ("maps_dir", "metadata_dir"):
        if OmegaConf.is_missing(cfg, key):
            raise EvalMapsError(
                f"{key} is not set. Run: python -m camexp.eval_maps maps_dir=<folder of .npy "
                "maps> metadata_dir=<metadata folder> split=test"
            )
    output = cfg.get("output")
    if output:
        check_output(output)  # before the evaluation, not after it
    size = cfg.image_size
    if not isinstance(size, int):
        size = list(size)
    result = evaluate_maps(
        maps_dir=cfg.maps_dir,
        metadata_dir=cfg.metadata_dir,
        split=cfg.split,
        cam_curve_interval=cfg.cam_curve_interval,
        iou_thresholds=list(cfg.iou_thresholds),
        multi_contour=cfg.multi_contour,
        image_size=size,
        mask_root=cfg.get("mask_root"),
        workers=int(cfg.get("workers", 1)),
        image_root=cfg.get("image_root"),
    )
    if output:
        try:
            result["output"] = str(write_result(result, output))
        except OSError as error:
            raise EvalMapsError(
                f"output={output} cannot be written ({os.strerror(error.errno or 0) or error}); the "
                f"evaluation gave: {_report(result)}. Pass output= a file in a folder you can "
                "write, or output=null to print the numbers only.") from None
    return result


def check_output(output: str) -> Path:
    """``output`` names a file that can be created: not a folder, not under a file."""
    path = Path(output).expanduser()
    if path.is_dir():
        raise EvalMapsError(
            f"output={path} is a folder; name the result file, e.g. output={path / 'eval_maps.json'}, "
            "or output=null to print the numbers only.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EvalMapsError(
                    f"output={path} cannot be written: {parent} is a file, not a folder. Pass "
                    "output= a file in a folder (e.g. output=<folder>/eval_maps.json), or "
                    "output=null to print the numbers only.")
            break
    return path


def _report(result: dict[str, Any]) -> str:
    keys = [k for k in result if k.startswith(("MaxBoxAcc", "PxAP")) and "tau" not in k]
    parts = [f"{k}={result[k]:.2f}" for k in keys]
    where = result.get("output", "(not written)")
    extra = result.get("extra_maps", 0)
    unused = (f" ({extra} .npy file(s) under maps_dir are not in the split and were not read)"
              if extra else "")
    return (f"eval_maps: {result['num_images']} images: " + ", ".join(parts) + f" -> {where}"
            + unused)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval_maps")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: evaluate, write the JSON, exit 2 with one paragraph on bad input."""
    try:
        result = run(cfg)
    except INPUT_ERRORS as err:
        print(f"eval_maps: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(_report(result))


if __name__ == "__main__":
    run_cli(main, lambda text: unknown_key_hint(text, "eval_maps", sys.argv[1:]))

"""``python -m camexp.check_data data=...``: check a dataset on disk and print a short report.

Reads the dataset's files as training would (same ``data=`` config), then checks: images per
split and per class, boxes per image, images (and masks) missing on disk, unreadable or
truncated images (a seeded sample of ``sample`` per split; ``full=true`` decodes every image),
boxes outside the image or with ``x1 < x0``, labels out of range, duplicate ids, and the class
count against ``data.num_classes`` (and ``model.num_classes`` when a ``model=`` is given).

Exit status: 0 when the dataset is usable, 1 when the report lists problems, 2 when the layout
itself cannot be read (one paragraph naming the file and the fix).
"""

from __future__ import annotations

import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from camexp.config.validate import unknown_key_hint
from camexp.core.errors import exit_on_user_error, run_cli
from camexp.data.checks import Report, check_tables, training_problems
from camexp.data.tables import Tables
from camexp.runs.start import print_config_tree


def check_data(cfg: DictConfig) -> Report:
    """Build the configured DataModule, read its tables, run every check; returns the report."""
    print_config_tree(cfg)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    tables = datamodule.read_tables()
    if datamodule.num_classes is None:  # data.num_classes=null: the dataset's own count
        datamodule.num_classes = len(tables.class_names)
    model = cfg.get("model")
    model_classes = model.get("num_classes") if model else None
    report = check_tables(tables, datamodule.num_classes,
                          sample=None if cfg.get("full") else int(cfg.get("sample", 500)),
                          seed=int(cfg.get("seed", 0)), model_classes=model_classes,
                          workers=int(cfg.get("workers", 8)), symlinks=True)
    if getattr(datamodule, "on_bad_image", "error") == "skip":
        report.apply_skip()
    # splits that would train on nothing or validate nothing (with the images that remain)
    report.problems += training_problems(_usable(tables, report), datamodule.num_classes,
                                         int(datamodule.batch_size))
    print(report.format(limit=int(cfg.get("limit", 50))))
    return report


def _usable(tables: Tables, report: Report) -> Tables:
    """``tables`` less the images ``data.on_bad_image=skip`` leaves out."""
    if not report.skipped:
        return tables
    drop: dict[str, set[int]] = {}
    for problem in report.skipped:
        drop.setdefault(problem.split, set()).add(problem.row)
    splits = {name: split.without(sorted(drop[name])) if name in drop else split
              for name, split in tables.splits.items()}
    return Tables(splits, tables.class_names, tables.classes_from, tables.description,
                  problems=tables.problems, notes=tables.notes)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="check_data")
def main(cfg: DictConfig) -> None:
    report = exit_on_user_error(lambda: check_data(cfg))
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main, lambda text: unknown_key_hint(text, "check_data", sys.argv[1:]))

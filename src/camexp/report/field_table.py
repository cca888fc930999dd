"""The field's table (docs/methods.md) from any set of runs: rows = training methods, columns =
backbones per dataset, ours next to the field's number, and the means.

Each finished run is placed by what it ran, read from its config: the dataset (CUB layout,
ImageNet, OpenImages; the embedded synthetic data apart), the backbone (``model.arch``) and the
training method (``method._target_``), so a plain sweep ``-m method=... model=...`` fills the
table as ``experiment=wsol_<dataset>_<backbone> method=<method>`` does. The score is the
field's: ``test/MaxBoxAccV2`` (``test/PxAP`` on OpenImages). The field's number of a cell is its
row of the published numbers (``conf/published.yaml``, source ``choe2020``), the centre
baseline's one number per dataset included. Several runs in a cell (seeds, other settings) are
averaged, and their count is shown.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

METHOD_LABELS = {"CAM": "CAM", "HideAndSeek": "HaS", "ACoL": "ACoL", "SPG": "SPG", "ADL": "ADL",
                 "CutMix": "CutMix", "FSL": "FSL", "TSCAM": "TS-CAM", "SCM": "SCM", "SAT": "SAT"}
CENTRE = "Centre baseline"
METHOD_ORDER = ["CAM", "HaS", "ACoL", "SPG", "ADL", "CutMix", "FSL", CENTRE]
# the source of the field's numbers in conf/published.yaml
FIELD_SOURCE = "choe2020"
BACKBONE_LABELS = {"vgg16": "VGG16", "inception_v3": "InceptionV3", "resnet50": "ResNet50"}
BACKBONE_ORDER = ["VGG16", "InceptionV3", "ResNet50"]
DATASETS = {"CUBDataModule": "CUB", "ImageNetDataModule": "ImageNet", "OpenImagesDataModule": "OpenImages"}
DATASET_ORDER = ["ImageNet", "CUB", "OpenImages", "Synthetic"]
SCORE = {"OpenImages": "PxAP"}


def training_config(config: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    """The config that says what was trained: the run's own, or for an eval run (no ``model``)
    that of the training run its ``ckpt_path`` comes from."""
    if config.get("model") or not config.get("ckpt_path"):
        return config
    import yaml

    trained = Path(str(config["ckpt_path"])).expanduser().parent.parent / ".hydra" / "config.yaml"
    try:
        return yaml.safe_load(trained.read_text()) or {}
    except OSError:
        return {}


def cell_of(config: Mapping[str, Any], path: Path) -> tuple[str, str, str] | None:
    """(dataset, backbone, method) labels of a run, or None when it trained no model."""
    trained = training_config(config, path)
    model, data = trained.get("model") or {}, trained.get("data") or config.get("data") or {}
    if not model.get("arch"):
        return None
    data_class = str(data.get("_target_", "")).rsplit(".", 1)[-1]
    dataset = "Synthetic" if data.get("synthetic") else DATASETS.get(data_class, data_class or "?")
    target = str((trained.get("method") or model.get("method") or {}).get("_target_", "CAM"))
    method = target.rsplit(".", 1)[-1]
    return dataset, BACKBONE_LABELS.get(model["arch"], model["arch"]), METHOD_LABELS.get(method, method)


def field_numbers(published: Sequence[Any]) -> dict[tuple[str, str, str], float]:
    """The field's number per (dataset, backbone label, method label) from its rows of the
    published numbers: the dataset's score (``test/MaxBoxAccV2``, ``test/PxAP`` on
    OpenImages) and, in the centre-baseline row of every backbone, the centre's."""
    numbers = {}
    for row in published:
        if row.source != FIELD_SOURCE:
            continue
        score = f"test/{SCORE.get(row.dataset, 'MaxBoxAccV2')}"
        value = row.metrics.get(f"{score}_center_baseline" if row.method == CENTRE else score)
        if value is None:
            continue
        backbones = BACKBONE_ORDER if row.backbone is None else [
            BACKBONE_LABELS.get(row.backbone, row.backbone)]
        for backbone in backbones:
            numbers[(row.dataset, backbone, row.method)] = value
    return numbers


def field_cells(runs: Sequence[Any], published: Sequence[Any]) -> list[dict[str, Any]]:
    """One entry per filled cell: dataset, backbone, method, ours (mean), n, field, diff.

    The centre-baseline row (method ``Centre baseline``) averages the centre baseline that
    every run of a dataset and backbone reports beside its own score (``test/<score>_center_
    baseline``: the same Gaussian map scored by the same metric on the same test split)."""
    scores: dict[tuple[str, str, str], list[float]] = {}
    for run in runs:
        if run.metrics is None:
            continue
        cell = cell_of(run.config, run.path)
        if cell is None:
            continue
        score = SCORE.get(cell[0], "MaxBoxAccV2")
        value = run.metrics.get(f"test/{score}")
        if value is not None:
            scores.setdefault(cell, []).append(value)
        centre = run.metrics.get(f"test/{score}_center_baseline")
        if centre is not None:
            scores.setdefault((cell[0], cell[1], CENTRE), []).append(centre)
    field = field_numbers(published)
    cells = []
    for (dataset, backbone, method), values in scores.items():
        ours = sum(values) / len(values)
        theirs = field.get((dataset, backbone, method))
        cells.append({"dataset": dataset, "backbone": backbone, "method": method, "ours": ours,
                      "n": len(values), "field": theirs,
                      "diff": None if theirs is None else ours - theirs})
    return cells


def _order(values: set[str], order: list[str]) -> list[str]:
    return [v for v in order if v in values] + sorted(values - set(order))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def field_table_markdown(cells: Sequence[dict[str, Any]]) -> str:
    """The table as Markdown: ``ours / field`` per backbone, then the dataset's means."""
    if not cells:
        return ""
    datasets = _order({c["dataset"] for c in cells}, DATASET_ORDER)
    methods = _order({c["method"] for c in cells}, METHOD_ORDER)
    index = {(c["dataset"], c["backbone"], c["method"]): c for c in cells}
    columns = [(d, b) for d in datasets for b in _order({c["backbone"] for c in cells if c["dataset"] == d}, BACKBONE_ORDER)]
    header = ["method"]
    for dataset in datasets:
        header += [f"{dataset} {b}" for d, b in columns if d == dataset] + [f"{dataset} mean"]
    lines = ["## The field's table", "",
             "Test MaxBoxAccV2 (PxAP on OpenImages), `ours / field` (docs/methods.md; `-`: no run or "
             "no published number; `(n)`: mean of n runs). Means over the backbones with a run.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        row = [method]
        for dataset in datasets:
            ours, theirs = [], []
            for d, backbone in columns:
                if d != dataset:
                    continue
                cell = index.get((dataset, backbone, method))
                if cell is None:
                    row.append("-")
                    continue
                count = f" ({cell['n']})" if cell["n"] > 1 else ""
                row.append(f"{_fmt(cell['ours'])}{count} / {_fmt(cell['field'])}")
                ours.append(cell["ours"])
                if cell["field"] is not None:
                    theirs.append(cell["field"])
            mean_ours = sum(ours) / len(ours) if ours else None
            mean_field = sum(theirs) / len(theirs) if theirs and len(theirs) == len(ours) else None
            row.append(f"{_fmt(mean_ours)} / {_fmt(mean_field)}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_field_table(runs: Sequence[Any], published: Sequence[Any], out_dir: Path) -> str:
    """Write ``field_table.md`` and ``field_table.csv`` (when any run fills a cell); returns the
    Markdown (empty when no run trained a model)."""
    cells = field_cells(runs, published)
    markdown = field_table_markdown(cells)
    if markdown:
        (out_dir / "field_table.md").write_text(markdown)
        with (out_dir / "field_table.csv").open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["dataset", "backbone", "method", "ours", "n", "field", "diff"])
            writer.writeheader()
            writer.writerows(cells)
    return markdown

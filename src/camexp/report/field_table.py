"""The field's table (docs/methods.md) from any set of runs: rows = training methods, columns =
backbones per dataset, ours next to the field's number, and the means.

Each finished run is placed by what it ran, read from its config: the dataset (CUB layout,
ImageNet, OpenImages), the backbone (``model.arch``) and the training method
(``method._target_``), so a plain sweep ``-m method=... model=...`` fills the table as
``experiment=wsol_<dataset>_<backbone> method=<method>`` does. The score is the field's:
``test/MaxBoxAccV2`` (``test/PxAP`` on OpenImages). The field's number of a cell is its row of
the published numbers (``conf/published.yaml``, source ``choe2020``), the centre baseline's
one number per dataset included. Several runs in a cell (seeds, other settings) are averaged,
and their count is shown, with the count of distinct test evaluations behind them.

A cell compares like with like: it takes only **training runs under the field's protocol**,
decided by these settings of the run's config (:func:`off_protocol` names the first that
differs; every other run is in the runs table only, its ``field_table`` column saying why):

- a training run (``task_name=train``, ``train=true``), not an evaluation of a checkpoint;
- one of the field's datasets on the field's splits (``data.split=wsol``);
- the method's own map scored (``localization.method=cam``);
- the field's full schedule: ``trainer.max_epochs`` 50 on CUB, 10 on ImageNet and OpenImages,
  every batch (no ``trainer.limit_*_batches``, ``fast_dev_run`` or ``overfit_batches``);
- the checkpoint chosen on val by the field's score (``callbacks.model_checkpoint.monitor`` =
  ``val/MaxBoxAccV2``, ``val/PxAP`` on OpenImages);
- the field's evaluation: ``data.eval_size=[224, 224]``, ``localization.cam_curve_interval``
  0.001, ``localization.iou_thresholds`` [30, 50, 70], ``localization.multi_contour=true``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from camexp.runs.info import training_run_folder

METHOD_LABELS = {"CAM": "CAM", "HideAndSeek": "HaS", "ACoL": "ACoL", "SPG": "SPG", "ADL": "ADL",
                 "CutMix": "CutMix", "FSL": "FSL", "BAS": "BAS", "NLCCAM": "NL-CCAM",
                 "TSCAM": "TS-CAM", "SCM": "SCM", "SAT": "SAT"}
CENTRE = "Centre baseline"
METHOD_ORDER = ["CAM", "HaS", "ACoL", "SPG", "ADL", "CutMix", "FSL", CENTRE]
# the source of the field's numbers in conf/published.yaml
FIELD_SOURCE = "choe2020"
BACKBONE_LABELS = {"vgg16": "VGG16", "inception_v3": "InceptionV3", "resnet50": "ResNet50"}
BACKBONE_ORDER = ["VGG16", "InceptionV3", "ResNet50"]
DATASETS = {"CUBDataModule": "CUB", "ImageNetDataModule": "ImageNet", "OpenImagesDataModule": "OpenImages"}
DATASET_ORDER = ["ImageNet", "CUB", "OpenImages", "Synthetic"]
SCORE = {"OpenImages": "PxAP"}
# the field's schedule length per dataset (its recipes: conf/experiment/wsol_*.yaml)
FIELD_EPOCHS = {"CUB": 50, "ImageNet": 10, "OpenImages": 10}
# settings of the field's evaluation: (dotted key, value, what it is)
FIELD_EVALUATION = (("data.eval_size", [224, 224], "evaluation size"),
                    ("localization.cam_curve_interval", 0.001, "threshold spacing"),
                    ("localization.iou_thresholds", [30, 50, 70], "IoU thresholds of MaxBoxAccV2"),
                    ("localization.multi_contour", True, "every-contour rule of MaxBoxAccV2"))
SHORTCUTS = ("limit_train_batches", "limit_val_batches", "limit_test_batches")


def _reader(config: Mapping[str, Any]) -> Callable[[str], Any]:
    """A function giving the value of a dotted key of a run's config, interpolations resolved
    where they can be (``trainer.max_epochs: ${data.epochs}``); None when absent or
    unresolvable (Hydra's own ``${hydra:...}``)."""
    from omegaconf import OmegaConf

    try:
        node = OmegaConf.create(dict(config))
    except Exception:  # not a config a run writes
        return lambda dotted: None

    def value(dotted: str) -> Any:
        try:
            found = OmegaConf.select(node, dotted, default=None, throw_on_resolution_failure=False)
            return OmegaConf.to_container(found, resolve=True) if OmegaConf.is_config(found) else found
        except Exception:
            return None

    return value


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, list):
        return isinstance(value, (list, tuple)) and len(value) == len(expected) and all(
            _same(v, e) for v, e in zip(value, expected, strict=True))
    if isinstance(expected, bool) or expected is None:
        return value is expected
    if isinstance(expected, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and \
            float(value) == float(expected)
    return value == expected


def off_protocol(config: Mapping[str, Any], path: Path) -> str | None:
    """Why a run does not fill a cell of the field's table (the first setting of the module
    docstring's list that differs), or None when it is a training run under the protocol."""
    if config.get("task_name", "train") != "train" or config.get("ckpt_path") and not config.get("model"):
        return "an evaluation of a checkpoint, not a training run"
    if config.get("train") is False:
        return "train=false: tested without training"
    cell = cell_of(config, path)
    if cell is None:
        return "no trained model"
    dataset, setting = cell[0], _reader(config)
    if dataset not in FIELD_EPOCHS:
        return f"the {dataset} data is not one of the field's datasets"
    if setting("data.split") != "wsol":
        return f"data.split={setting('data.split')}, not the field's splits (data.split=wsol)"
    maps = setting("localization.method") or "cam"
    if maps != "cam":
        return f"localization.method={maps} scored, not the method's own map (cam)"
    epochs = setting("trainer.max_epochs")
    if not _same(epochs, FIELD_EPOCHS[dataset]):
        return f"trainer.max_epochs={epochs}, the field trains {FIELD_EPOCHS[dataset]} on {dataset}"
    for key in SHORTCUTS:
        value = setting(f"trainer.{key}")
        if value is not None and not _same(value, 1.0):
            return f"trainer.{key}={value}: a shortened run"
    if setting("trainer.fast_dev_run"):
        return "trainer.fast_dev_run: a one-batch check"
    if setting("trainer.overfit_batches"):
        return "trainer.overfit_batches: an overfitting check"
    monitor = setting("callbacks.model_checkpoint.monitor")
    wanted = f"val/{SCORE.get(dataset, 'MaxBoxAccV2')}"
    if monitor != wanted:
        return f"checkpoint chosen by {monitor}, the field chooses by {wanted}"
    for key, expected, what in FIELD_EVALUATION:
        value = setting(key)
        if not _same(value, expected):
            return f"{key}={value}, not the field's {what} ({expected})"
    return None


def training_config(config: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    """The config that says what was trained: the run's own, or for an eval run (no ``model``)
    that of the training run its ``ckpt_path`` comes from."""
    if config.get("model") or not config.get("ckpt_path"):
        return config
    import yaml

    trained = training_run_folder(config["ckpt_path"]) / ".hydra" / "config.yaml"
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
    """One entry per filled cell: dataset, backbone, method, ours (mean), n, tests, field, diff.

    Only training runs under the field's protocol count (:func:`off_protocol`). ``tests``: the
    distinct test evaluations behind the cell (each run's experiment counted once, with its
    ledger's count of distinct checkpoint and settings pairs; :mod:`camexp.runs.ledger`).
    The centre-baseline row (method ``Centre baseline``) averages the centre baseline that
    every run of a dataset and backbone reports beside its own score (``test/<score>_center_
    baseline``: the same Gaussian map scored by the same metric on the same test split)."""
    scores: dict[tuple[str, str, str], list[float]] = {}
    tests: dict[tuple[str, str, str], dict[str, int]] = {}
    for run in runs:
        if run.metrics is None or off_protocol(run.config, run.path) is not None:
            continue
        cell = cell_of(run.config, run.path)
        if cell is None:
            continue
        score = SCORE.get(cell[0], "MaxBoxAccV2")
        value = run.metrics.get(f"test/{score}")
        if value is None:
            continue
        scores.setdefault(cell, []).append(value)
        looks = tests.setdefault(cell, {})
        key = getattr(run, "test_group", None) or str(run.path)
        looks[key] = max(looks.get(key, 0), getattr(run, "test_evaluations", None) or 1)
        centre = run.metrics.get(f"test/{score}_center_baseline")
        if centre is not None:
            scores.setdefault((cell[0], cell[1], CENTRE), []).append(centre)
            tests.setdefault((cell[0], cell[1], CENTRE), {})[key] = looks[key]
    field = field_numbers(published)
    cells = []
    for (dataset, backbone, method), values in scores.items():
        ours = sum(values) / len(values)
        theirs = field.get((dataset, backbone, method))
        cells.append({"dataset": dataset, "backbone": backbone, "method": method, "ours": ours,
                      "n": len(values), "tests": sum(tests[(dataset, backbone, method)].values()),
                      "field": theirs, "diff": None if theirs is None else ours - theirs})
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
             "no published number; `(n)`: mean of n runs; `[t]`: t distinct test evaluations "
             "(checkpoint, settings) behind our number, 1 per run under the protocol). Only training "
             "runs under the field's protocol (docs/methods.md#the-fields-table-in-camexpreport); "
             "the other runs are in the runs table. Means over the backbones with a run.", "",
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
                row.append(f"{_fmt(cell['ours'])}{count} [{cell['tests']}] / {_fmt(cell['field'])}")
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
            writer = csv.DictWriter(file, fieldnames=["dataset", "backbone", "method", "ours", "n",
                                                      "tests", "field", "diff"])
            writer.writeheader()
            writer.writerows(cells)
    return markdown

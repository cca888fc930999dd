"""The report's runs table: one row per run of any kind, preset or not.

The paper tables (:mod:`camexp.report`) only hold runs of experiment presets. This table
holds every run under the report's folder: what was trained (model, pool, training method),
how its maps were scored (localization method), on which data, the key metrics, the
warnings of a collapsed run, and as the row's label the overrides that tell it apart from
the other runs (a swept value such as ``model.pool=gmp`` or ``localization.method=gradcam``).

Where each column comes from, in order: the run's ``run_settings.yaml`` (written by camexp.train
and camexp.eval: resolved data and localization settings and the Hydra choices), its
``.hydra/config.yaml`` and ``.hydra/hydra.yaml`` choices, and for an eval run the training run
of its ``ckpt_path`` (model, pool and training method come from there). New columns: add an
entry to :data:`INFO_COLUMNS` or :data:`METRIC_COLUMNS`.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from camexp.report.collect import Run, read_run
from camexp.report.field_table import off_protocol
from camexp.runs.info import SETTINGS_FILE, training_method, training_run_folder

# (column, header, unit) of the metrics shown: "pct" = a fraction shown in %, "num" = as logged
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("acc_top1", "top-1 %", "pct"),
    ("acc_top5", "top-5 %", "pct"),
    ("MaxBoxAccV2", "MaxBoxAccV2", "num"),
    ("MaxBoxAcc", "MaxBoxAcc", "num"),
    ("PxAP", "PxAP", "num"),
    ("loc_top1_err", "top-1 loc. err", "num"),
    ("loc_gt_known", "GT-known loc.", "num"),
    ("MaxBoxAccV2_center_baseline", "centre baseline", "num"),
)
# overrides that never tell runs apart for a reader (paths, the checkpoint, Hydra's own)
HIDDEN_OVERRIDES = ("ckpt_path=", "hydra.", "paths.", "hydra/")


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _settings(run: Run) -> dict[str, Any]:
    path = run.path / SETTINGS_FILE
    try:
        return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return {}


def _training_run(run: Run) -> Run | None:
    """The training run of an eval run's ``ckpt_path`` (None if it is not on disk)."""
    ckpt = run.config.get("ckpt_path")
    if not ckpt or run.config.get("task_name") == "train":
        return None
    train_dir = training_run_folder(ckpt)
    if not (train_dir / ".hydra" / "config.yaml").is_file():
        return None
    return read_run(train_dir, train_dir)


def _data_label(choice: str | None, data: dict[str, Any]) -> str:
    """``cub (birds10, 112x112)``: the data group, the dataset folder, the evaluation size."""
    name = choice or str(data.get("_target_", "?")).rsplit(".", 1)[-1].replace("DataModule", "").lower()
    details = []
    root = data.get("root")
    if root and "${" not in str(root) and choice != "synthetic":
        details.append(Path(str(root)).name)
    size = data.get("eval_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        details.append(f"{size[0]}x{size[1]}")
    return f"{name} ({', '.join(details)})" if details else name


def describe(run: Run) -> dict[str, Any]:
    """The non-metric columns of one run."""
    settings = _settings(run)
    trained = _training_run(run)
    source = trained if trained is not None else run
    source_settings = _settings(trained) if trained is not None else settings
    choices = {**source.choices, **(source_settings.get("choices") or {})}
    model_cfg = source.config.get("model") or source_settings.get("model") or {}
    kind = str(run.config.get("task_name") or ("eval" if trained is not None else "train"))
    data = settings.get("data") or run.config.get("data") or {}
    data_choice = (settings.get("choices") or {}).get("data") or run.choices.get("data")
    localization = settings.get("localization") or run.config.get("localization") or {}
    return {
        "kind": kind,
        "model": str(choices.get("model") or model_cfg.get("arch") or "?"),
        "pool": str(model_cfg.get("pool") or "?"),
        "method": source_settings.get("method") or training_method(source.config, choices),
        "localization": str(localization.get("method") or "cam"),
        "data": _data_label(data_choice, data),
        "trained_in": str(trained.path) if trained is not None else "",
    }


def _metrics(run: Run) -> tuple[str, dict[str, float]]:
    """The stage shown (test, else val) and its metrics in the table's units."""
    numbers = run.metrics or {}
    stage = "test" if any(k.startswith("test/") for k in numbers) else "val"
    shown = {}
    for key, header, unit in METRIC_COLUMNS:
        value = numbers.get(f"{stage}/{key}")
        if value is not None and math.isfinite(value):
            shown[header] = 100.0 * value if unit == "pct" else value
    return stage, shown


def _labels(runs: Sequence[Run]) -> dict[str, str]:
    """Each run's label: its overrides that not every run shares (hidden ones left out),
    else its run id."""
    sets = {run.run_id: [o for o in run.overrides if not o.startswith(HIDDEN_OVERRIDES)]
            for run in runs}
    common = set.intersection(*(set(v) for v in sets.values())) if len(sets) > 1 else set()
    return {run_id: " ".join(o for o in overrides if o not in common) or run_id
            for run_id, overrides in sets.items()}


def run_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per run (finished first, in folder order), each a dict of the table's columns."""
    labels = _labels(runs)
    rows = []
    for run in sorted(runs, key=lambda r: (r.metrics is None, _natural(r.run_id))):
        stage, metrics = _metrics(run)
        outside = off_protocol(run.config, run.path)
        rows.append({
            "label": labels[run.run_id], "run": run.run_id, **describe(run),
            "stage": stage if run.metrics is not None else "",
            "metrics": metrics, "warnings": list(run.warnings),
            "status": run.status, "test_evaluations": run.test_evaluations,
            "field_table": outside or ("in" if run.metrics is not None else "not finished"),
            "overrides": " ".join(run.overrides),
        })
    return rows


# a run's status: finished (metrics.json), failed to start (refused before training or testing:
# a config or data error, a locked folder), unfinished (started, no final numbers: running,
# crashed, killed)
STATUSES = ("finished", "unfinished", "failed to start")

INFO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("label", "run (differing overrides)"), ("kind", "kind"), ("model", "model"), ("pool", "pool"),
    ("method", "training method"), ("localization", "localization"), ("data", "data"),
)


def _metric_headers(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {header for row in rows for header in row["metrics"]}
    return [header for _, header, _ in METRIC_COLUMNS if header in present]


def short_warning(text: str) -> str:
    """A warning's opening clause (before its explanation), for the table's cell."""
    return re.split(r" \(|: ", text, maxsplit=1)[0]


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def runs_markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The ``## Runs`` section of report.md (empty without runs)."""
    if not rows:
        return []
    headers = _metric_headers(rows)
    counts = {status: sum(row["status"] == status for row in rows) for status in STATUSES}
    out = ["## Runs", "",
           f"{len(rows)} runs ({', '.join(f'{n} {status}' for status, n in counts.items() if n)}). "
           "Metrics of the test split (val when a run has no test), top-1/top-5 in %, localization "
           "metrics as logged (%). tests: the distinct test evaluations (checkpoint, settings) of "
           "the run's experiment in the test ledger. Warnings: signs of a collapsed run (see each "
           "run's metrics.json).", "",
           "| " + " | ".join([h for _, h in INFO_COLUMNS] + headers
                             + ["tests", "warnings", "folder", "status"]) + " |",
           "|" + "---|" * (len(INFO_COLUMNS) + len(headers) + 4)]
    for row in rows:
        cells = [_cell(row[key]) for key, _ in INFO_COLUMNS]
        cells += [f"{row['metrics'][h]:.2f}" if h in row["metrics"] else "" for h in headers]
        tests = row["test_evaluations"] if row["stage"] == "test" else None
        cells += ["" if tests is None else str(tests),
                  _cell("; ".join(short_warning(w) for w in row["warnings"])), f"`{row['run']}`",
                  row["status"]]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def write_runs_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """``runs.csv``: the runs table, numbers unrounded, one column per metric header."""
    headers = _metric_headers(rows)
    fields = [key for key, _ in INFO_COLUMNS] + ["stage", *headers, "test_evaluations", "warnings",
                                                  "run", "trained_in", "status", "field_table",
                                                  "overrides"]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            line = {key: "" if row[key] is None else row[key]
                    for key in fields if key in row and key != "warnings"}
            line.update({h: row["metrics"].get(h, "") for h in headers})
            line["warnings"] = " | ".join(row["warnings"])
            writer.writerow(line)


def write_runs_plot(rows: Sequence[dict[str, Any]], path: Path,
                    shown: Sequence[str] = ("top-1 %", "MaxBoxAccV2", "centre baseline")) -> Path | None:
    """``runs.png``: a bar per run and metric (top-1 %, MaxBoxAccV2, the centre baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in rows if row["metrics"]]
    headers = [h for h in shown if any(h in row["metrics"] for row in rows)]
    if not rows or not headers:
        return None
    width = 0.8 / len(headers)
    figure, axes = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) * len(headers) + 2), 4.5))
    for k, header in enumerate(headers):
        xs = [i + (k - (len(headers) - 1) / 2) * width for i in range(len(rows))]
        axes.bar(xs, [row["metrics"].get(header, 0.0) for row in rows], width, label=header)
    shorten: Callable[[str], str] = lambda text: text if len(text) <= 40 else text[:37] + "..."  # noqa: E731
    axes.set_xticks(range(len(rows)), [shorten(row["label"]) + ("\n(warnings)" if row["warnings"] else "")
                                       for row in rows], fontsize=7, rotation=20, ha="right")
    axes.set_ylabel("%")
    axes.set_ylim(0, 100)
    axes.set_title("runs: test top-1 and MaxBoxAccV2")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

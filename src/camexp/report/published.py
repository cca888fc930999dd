"""The published numbers (``conf/published.yaml``) and which of them a run is compared with.

A run gets the rows whose description matches what its config says it ran (the format and
the fields are documented at the top of the yaml): the dataset, the backbone (``model.arch``),
the training method and the pooling, as :func:`camexp.report.field_table.cell_of` reads them;
the scored map (``localization.method``); and the row's other deciding settings (e.g.
``data.split``). An eval run is described by its checkpoint's training run plus its own data
and localization settings. ``+paper_preset=<recipe>`` on a run names the rows of one recipe
instead. The field's rows (source ``choe2020``) take only training runs under the field's
protocol, as the field's table does (:func:`camexp.report.field_table.off_protocol` lists
the settings that decide it).

A row with its own box rule (``box``) compares its top-1 / top-5 / GT-known localization only
with a run scored under the same rule (``localization.box_rule``, :func:`same_box_rule`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from camexp.core.errors import UserError
from camexp.report.collect import Run, read_run
from camexp.report.field_table import FIELD_SOURCE, cell_of, off_protocol, training_config
from camexp.report.paper_row import PaperRow
from camexp.runs.info import training_run_folder

PUBLISHED = Path(__file__).resolve().parents[3] / "conf" / "published.yaml"

REQUIRED = ("source", "table", "row", "dataset", "method", "metrics")
OPTIONAL = ("backbone", "pooling", "maps", "settings", "recipe", "box")


def _bad(path: Path, where: str, problem: str) -> UserError:
    return UserError(f"{path}, {where}: {problem} Fix the row; the format is described at the "
                     "top of the file.")


def _parse_row(entry: Any, index: int, path: Path, sources: Mapping, metrics: Mapping) -> PaperRow:
    where = f"row {index + 1}"
    if not isinstance(entry, dict):
        raise _bad(path, where, f"a row is a mapping of {', '.join(REQUIRED)}, got {entry!r}.")
    where = f"row {index + 1} ({entry.get('table')!r} / {entry.get('row')!r})"
    missing = [key for key in REQUIRED if entry.get(key) in (None, "", {})]
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise _bad(path, where, f"missing {missing}, unknown {unknown}.")
    if entry["source"] not in sources:
        raise _bad(path, where, f"source {entry['source']!r} is not one of `sources:` "
                                f"({', '.join(sources)}).")
    values = entry["metrics"]
    if not isinstance(values, dict) or any(key not in metrics for key in values):
        raise _bad(path, where, f"every metric needs its unit and convention under `metrics:` "
                                f"(known: {', '.join(metrics)}); got {values!r}.")
    try:
        numbers = {str(key): float(value) for key, value in values.items()}
    except (TypeError, ValueError):
        raise _bad(path, where, f"metric values must be numbers, got {values!r}.") from None
    return PaperRow(
        table=str(entry["table"]), row=str(entry["row"]), metrics=numbers,
        source=str(entry["source"]), dataset=str(entry["dataset"]), method=str(entry["method"]),
        backbone=entry.get("backbone"), pooling=entry.get("pooling"),
        maps=str(entry.get("maps") or "cam"), settings=dict(entry.get("settings") or {}),
        recipe=entry.get("recipe"), box=entry.get("box"),
    )


def load_published(path: str | Path = PUBLISHED) -> list[PaperRow]:
    """Every row of the published table, in file order (checked: see the yaml's header)."""
    path = Path(path).expanduser()
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"Cannot read the published numbers {path}: {error}.") from error
    if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
        raise UserError(f"{path}: expected `sources:`, `metrics:` and `rows:` (a list).")
    sources, metrics = document.get("sources") or {}, document.get("metrics") or {}
    return [_parse_row(entry, i, path, sources, metrics) for i, entry in enumerate(document["rows"])]


def _setting(configs: Sequence[Mapping[str, Any]], dotted: str) -> Any:
    """The value of a dotted key in the first config that has it (None: none has)."""
    for config in configs:
        node: Any = config
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            return node
    return None


def _same(expected: Any, found: Any) -> bool:
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return isinstance(found, (int, float)) and float(found) == float(expected)
    return str(found) == str(expected)


def rows_of_run(config: Mapping[str, Any], path: Path, rows: Sequence[PaperRow]) -> list[PaperRow]:
    """The published rows that describe the run of ``config`` (see the module docstring)."""
    named = config.get("paper_preset")
    if named:
        chosen = [row for row in rows if row.recipe == named]
        if not chosen:
            recipes = sorted({row.recipe for row in rows if row.recipe})
            raise UserError(f"{path}: paper_preset={named!r} is the recipe of no row of the "
                            f"published numbers (recipes: {', '.join(recipes)}).")
        return chosen
    cell = cell_of(config, path)
    if cell is None:
        return []
    trained = training_config(config, path)
    model = trained.get("model") or {}
    facts = {"dataset": cell[0], "backbone": model.get("arch"), "method": cell[2],
             "pooling": model.get("pool", "gap"),
             "maps": (config.get("localization") or {}).get("method", "cam")}
    configs = (config, trained)  # the run's own settings first, then its training run's
    protocol = off_protocol(config, path) is None
    return [row for row in rows
            if (protocol or row.source != FIELD_SOURCE) and row.dataset == facts["dataset"] and row.method == facts["method"]
            and row.maps == facts["maps"]
            and row.backbone in (None, facts["backbone"]) and row.pooling in (None, facts["pooling"])
            and all(_same(value, _setting(configs, key)) for key, value in row.settings.items())]


def attach_published(runs: Sequence[Run], rows: Sequence[PaperRow]) -> None:
    """Give each run its published rows. An eval run that has rows and no preset of its own is
    shown under the preset it names (``paper_preset``) or that of its checkpoint's training run."""
    for run in runs:
        run.paper = rows_of_run(run.config, run.path, rows)
        if not run.paper or run.preset:
            continue
        run.preset = run.config.get("paper_preset")
        ckpt = run.config.get("ckpt_path")
        train_dir = training_run_folder(ckpt) if ckpt else None
        if not run.preset and train_dir and (train_dir / ".hydra" / "config.yaml").is_file():
            run.preset = read_run(train_dir, train_dir).preset


# the metrics a row's own box rule decides (the others, such as its classification, do not)
BOX_RULE_METRICS = ("test/top1_loc", "test/top5_loc", "test/gt_known_loc")
# what a run's box rule means where a key is left out (camexp.localization.box_rule.BoxRule)
BOX_RULE_DEFAULTS = {"iou": 0.5, "resize": "bicubic", "gt_known_map": "ground_truth"}


def scored_box_rule(run: Run) -> dict[str, Any] | None:
    """The box rule a run's maps were scored with: its ``run_settings.yaml`` (what train and
    eval used, an eval run's taken from its training run), else its config; None: none."""
    from camexp.runs.info import SETTINGS_FILE

    settings_file = run.path / SETTINGS_FILE
    localization = None
    if settings_file.is_file():
        try:
            localization = (yaml.safe_load(settings_file.read_text()) or {}).get("localization")
        except yaml.YAMLError:
            localization = None
    if not isinstance(localization, dict):
        localization = run.config.get("localization") or {}
    rule = localization.get("box_rule")
    return {**BOX_RULE_DEFAULTS, **rule} if isinstance(rule, dict) else None


def same_box_rule(stated: dict[str, Any], scored: dict[str, Any] | None) -> bool:
    """Whether a run scored with ``scored`` applies a row's rule ``stated`` (every key the row
    states, null keys being unknown and matching anything)."""
    if scored is None:
        return False
    return all(value is None or _same(value, scored.get(key)) for key, value in stated.items())

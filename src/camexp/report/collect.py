"""Collecting run folders for the report: each run's config, metrics, warnings and test count
(the published rows it is compared with: :mod:`camexp.report.published`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from camexp.core.errors import UserError
from camexp.report.paper_row import PaperRow
from camexp.runs.folder import START_FAILED
from camexp.runs.ledger import ledger_counts, read_test_record


@dataclass
class Run:
    """A run folder: its config, its final metrics (None: unfinished) and the published rows it
    is compared with."""

    path: Path
    run_id: str
    config: dict[str, Any]
    metrics: dict[str, float] | None
    overrides: list[str] = field(default_factory=list)
    preset: str | None = None
    paper: list[PaperRow] = field(default_factory=list)
    choices: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # distinct (checkpoint, settings) test evaluations of this run's experiment, as the test
    # ledger counts them now (camexp.runs.ledger); None: unknown
    test_evaluations: int | None = None
    # the experiment the ledger counts them under (its config hash)
    test_group: str | None = None
    # finished (metrics.json), failed to start (start_failed.txt: why), unfinished
    status: str = "unfinished"
    start_failure: str = ""

def derived_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` plus the %-unit metrics the paper's tables use (see the module docstring)."""
    out = dict(metrics)
    for stage in {key.split("/", 1)[0] for key in metrics if "/" in key}:
        for k in (1, 5):
            acc = metrics.get(f"{stage}/acc_top{k}")
            if acc is not None:
                out.setdefault(f"{stage}/cls_top{k}_err", 100.0 * (1.0 - acc))
                out.setdefault(f"{stage}/acc_top{k}_pct", 100.0 * acc)
    return out

def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"Cannot read {path}: {error}. The run folder is damaged; delete it or "
                        "move it out of the folder given to camexp.report.") from error

def _read_metrics(path: Path) -> dict[str, float] | None:
    """``metrics.json``'s numbers (its ``"warnings"`` list is read by :func:`_read_warnings`);
    None when it is absent (the run has not finished)."""
    if not path.is_file():
        return None
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items() if k != "warnings"}
    except (ValueError, TypeError, AttributeError) as error:
        raise UserError(f"{path} is not a JSON object of numbers ({error}). It is written by "
                        "camexp.train/eval at the end of a run; delete it to count the run as "
                        "unfinished.") from error

def _read_warnings(path: Path) -> list[str]:
    """The ``"warnings"`` of a run's ``metrics.json`` (signs of a collapsed run); [] if none."""
    try:
        found = json.loads(path.read_text()).get("warnings") if path.is_file() else None
    except (ValueError, AttributeError):
        return []
    return [str(w) for w in found] if isinstance(found, list) else []

def read_run(path: Path, root: Path, ledgers: dict[str, dict[str, int]] | None = None) -> Run:
    """One run folder (``path/.hydra/config.yaml`` exists); ``ledgers`` caches the counts of
    each test ledger read."""
    config = _read_yaml(path / ".hydra" / "config.yaml") or {}
    hydra_file = path / ".hydra" / "hydra.yaml"
    hydra_cfg = (_read_yaml(hydra_file) or {}).get("hydra", {}) if hydra_file.is_file() else {}
    choices = (hydra_cfg.get("runtime") or {}).get("choices") or {}
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = (_read_yaml(overrides_file) or []) if overrides_file.is_file() else []
    preset = choices.get("experiment")
    run = Run(path=path, run_id=str(path.relative_to(root)) if path != root else ".",
              config=config, metrics=_read_metrics(path / "metrics.json"),
              overrides=[str(o) for o in overrides if not str(o).startswith("experiment=")],
              preset=preset, choices=dict(choices), warnings=_read_warnings(path / "metrics.json"))
    record = read_test_record(path)
    if record:
        run.test_group = str(record.get("config_hash"))
        run.test_evaluations = int(record["test_evaluations"])
        ledger = record.get("ledger")
        if ledger:
            ledgers = {} if ledgers is None else ledgers
            if ledger not in ledgers:
                ledgers[ledger] = ledger_counts(ledger)
            run.test_evaluations = ledgers[ledger].get(run.test_group, run.test_evaluations)
    if run.metrics is not None:
        run.status = "finished"
    elif (path / START_FAILED).is_file():
        run.status = "failed to start"
        run.start_failure = (path / START_FAILED).read_text(errors="replace").strip()
    return run

def is_fast_dev_run(config: dict[str, Any]) -> bool:
    """A ``debug=fdr`` check (one batch per split): not a run the report shows."""
    trainer = config.get("trainer")
    return isinstance(trainer, dict) and bool(trainer.get("fast_dev_run"))


def find_runs(root: Path) -> list[Run]:
    """Every run folder under ``root`` (``root`` itself included), sorted by path; submitit's
    own folders and ``debug=fdr`` checks are skipped."""
    if not root.is_dir():
        raise UserError(f"{root} is not a folder. Pass a run, runs or sweep folder written by "
                        "camexp.train or camexp.eval (e.g. outputs/train/multiruns/<time>).")
    configs = sorted(root.rglob(".hydra/config.yaml"))
    ledgers: dict[str, dict[str, int]] = {}
    runs = [read_run(c.parent.parent, root, ledgers) for c in configs if ".submitit" not in c.parts]
    return [run for run in runs if not is_fast_dev_run(run.config)]

"""``python -m camexp.report <folder>``: our numbers next to the paper's, per paper table.

Collects the runs under ``<folder>`` (any folder holding ``.hydra/config.yaml``: a sweep, a
runs folder, one run), reads each run's ``metrics.json`` and the paper numbers its experiment
preset carries (``paper.rows`` of the composed config, see ``conf/experiment/``), and writes
into ``<folder>/report/`` (or ``--out``):

- ``report.md``: the runs table of every run, preset or not (:mod:`camexp.report_runs`: one
  row per run, also ``runs.csv`` and ``runs.png``), then one Markdown table per paper table:
  row, metric, paper, ours, ours - paper, run id (the run folder relative to ``<folder>``), status; a test number whose config had its
  test split evaluated more than once (``test_record.json``, :mod:`camexp.ledger`) is marked
  ``(test evaluated Nx)``;
- ``report.csv``: the same lines with a ``table`` column;
- ``<table>.png``: a bar plot of ours versus the paper's per table.

Rows of presets without a run are listed as ``missing``; runs without ``metrics.json`` as
``unfinished``. An eval run (``python -m camexp.eval``) takes the paper rows of the training
run its ``ckpt_path`` comes from (same localization method only), or those of the preset named
by ``+paper_preset=<preset>`` (e.g. a GAP checkpoint scored with ``localization.method=backprop``).

**Units.** The paper reports percentages. camexp logs ``acc_top1``/``acc_top5`` as fractions
and localization metrics in %. The report derives, in %:
``cls_top1_err = 100 * (1 - acc_top1)``, ``cls_top5_err = 100 * (1 - acc_top5)`` (Table 1),
``acc_top1_pct = 100 * acc_top1`` (Table 4); every other metric is compared as logged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from camexp.errors import UserError, exit_on_user_error
from camexp.ledger import read_test_record
from camexp.report_field import write_field_table

PRESETS_DIR = Path(__file__).resolve().parents[2] / "conf" / "experiment"
FIELDS = ("table", "row", "preset", "metric", "paper", "ours", "diff", "run", "status", "overrides",
          "test_evaluations")


@dataclass
class PaperRow:
    """One row of a paper table as a preset states it."""

    table: str
    row: str
    metrics: dict[str, float]
    preset: str | None = None


@dataclass
class Run:
    """A run folder: its config, its final metrics (None: unfinished) and its paper rows."""

    path: Path
    run_id: str
    config: dict[str, Any]
    metrics: dict[str, float] | None
    overrides: list[str] = field(default_factory=list)
    preset: str | None = None
    paper: list[PaperRow] = field(default_factory=list)
    choices: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # times the test split of this run's config was evaluated (camexp.ledger), None: unknown
    test_evaluations: int | None = None


def parse_paper(node: Any, preset: str | None = None) -> list[PaperRow]:
    """The paper rows of a config's ``paper`` node: ``{rows: [...]}``, a list of rows, or a
    single ``{table, row, metrics}``; anything else gives no rows."""
    if isinstance(node, dict) and "rows" in node:
        node = node["rows"]
    if isinstance(node, dict):
        node = [node]
    rows = []
    for entry in node or []:
        if isinstance(entry, dict) and entry.get("table") and isinstance(entry.get("metrics"), dict):
            metrics = {str(k): float(v) for k, v in entry["metrics"].items()}
            rows.append(PaperRow(str(entry["table"]), str(entry.get("row", "")), metrics, preset))
    return rows


def load_presets(presets_dir: Path = PRESETS_DIR) -> dict[str, list[PaperRow]]:
    """The paper rows of every preset file of ``presets_dir``, by preset name."""
    presets = {}
    for path in sorted(presets_dir.glob("*.yaml")):
        document = yaml.safe_load(path.read_text()) or {}
        rows = parse_paper(document.get("paper"), path.stem)
        if rows:
            presets[path.stem] = rows
    return presets


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


def read_run(path: Path, root: Path) -> Run:
    """One run folder (``path/.hydra/config.yaml`` exists)."""
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
    run.paper = parse_paper(config.get("paper"), preset)
    record = read_test_record(path)
    run.test_evaluations = int(record["test_evaluations"]) if record else None
    return run


def find_runs(root: Path) -> list[Run]:
    """Every run folder under ``root`` (``root`` itself included), sorted by path; submitit's
    own folders are skipped."""
    if not root.is_dir():
        raise UserError(f"{root} is not a folder. Pass a run, runs or sweep folder written by "
                        "camexp.train or camexp.eval (e.g. outputs/train/multiruns/<time>).")
    configs = sorted(root.rglob(".hydra/config.yaml"))
    return [read_run(c.parent.parent, root) for c in configs if ".submitit" not in c.parts]


def attach_eval_runs(runs: list[Run], presets: dict[str, list[PaperRow]]) -> None:
    """Give paper rows to runs whose config has none: ``paper_preset=<name>``, else those of the
    training run of ``ckpt_path`` when the localization method is the same."""
    for run in runs:
        if run.paper:
            continue
        named = run.config.get("paper_preset")
        if named:
            if named not in presets:
                raise UserError(f"{run.run_id}: paper_preset={named!r} is not a preset of "
                                f"conf/experiment/ (known: {sorted(presets)}).")
            run.preset, run.paper = named, presets[named]
            continue
        ckpt = run.config.get("ckpt_path")
        if not ckpt:
            continue
        train_dir = Path(str(ckpt)).expanduser().parent.parent
        if not (train_dir / ".hydra" / "config.yaml").is_file():
            continue
        trained = read_run(train_dir, train_dir)
        method = (run.config.get("localization") or {}).get("method")
        if method == (trained.config.get("localization") or {}).get("method"):
            run.preset, run.paper = trained.preset, trained.paper


def _fmt(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def report_lines(runs: Sequence[Run], presets: dict[str, list[PaperRow]],
                 all_tables: bool = False) -> list[dict[str, Any]]:
    """One line per (paper row, metric, run): runs in preset order, then presets without runs
    (``missing``). Tables without any run are left out unless ``all_tables``."""
    lines: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for run in runs:
        numbers = derived_metrics(run.metrics) if run.metrics is not None else None
        for paper_row in run.paper:
            seen.add((paper_row.table, paper_row.row))
            for metric, paper_value in paper_row.metrics.items():
                ours = numbers.get(metric) if numbers is not None else None
                status = "unfinished" if numbers is None else "ok" if ours is not None else "no metric"
                lines.append({
                    "table": paper_row.table, "row": paper_row.row, "preset": run.preset or "",
                    "metric": metric, "paper": paper_value, "ours": ours,
                    "diff": None if ours is None else ours - paper_value, "run": run.run_id,
                    "status": status, "overrides": " ".join(run.overrides),
                    "test_evaluations": run.test_evaluations if metric.startswith("test/") else None,
                })
    _mark_varying_overrides(lines)
    tables = {line["table"] for line in lines}
    for name, rows in presets.items():
        for paper_row in rows:
            if (paper_row.table, paper_row.row) in seen:
                continue
            if not all_tables and paper_row.table not in tables:
                continue
            seen.add((paper_row.table, paper_row.row))
            for metric, paper_value in paper_row.metrics.items():
                lines.append({"table": paper_row.table, "row": paper_row.row, "preset": name,
                              "metric": metric, "paper": paper_value, "ours": None, "diff": None,
                              "run": "", "status": "missing", "overrides": "", "varies": "",
                              "test_evaluations": None})
    order = {table: i for i, table in enumerate(_table_order(lines))}
    return sorted(lines, key=lambda line: order[line["table"]])


def _mark_varying_overrides(lines: list[dict[str, Any]]) -> None:
    """Set each line's ``varies``: the overrides of its run that the other runs of the same paper
    row do not all share (a swept parameter such as ``localization.paper_fraction=0.3``), less
    ``ckpt_path=`` (the run id already tells the runs apart)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in lines:
        groups.setdefault((line["table"], line["row"]), []).append(line)
    for group in groups.values():
        sets = {line["run"]: set(line["overrides"].split()) for line in group}
        common = set.intersection(*sets.values()) if len(sets) > 1 else set().union(*sets.values())
        for line in group:
            line["varies"] = " ".join(o for o in line["overrides"].split()
                                      if o not in common and not o.startswith("ckpt_path="))


def _table_order(lines: Iterable[dict[str, Any]]) -> list[str]:
    """Tables in natural order (Table 1, Table 2, ..., then the others by name)."""
    def key(name: str) -> tuple:
        match = re.fullmatch(r"Table (\d+)", name)
        return (0, int(match.group(1)), "") if match else (1, 0, name)
    return sorted({line["table"] for line in lines}, key=key)


def write_markdown(lines: Sequence[dict[str, Any]], path: Path, source: Path,
                   preamble: Sequence[str] = ()) -> None:
    """``report.md``: ``preamble`` (the runs table), a units note, then one table per paper table."""
    out = [f"# camexp report: {source}", "", *preamble]
    if lines:
        out += ["Paper numbers are %. Ours: `cls_top{1,5}_err = 100 * (1 - acc_top{1,5})`, "
                "`acc_top1_pct = 100 * acc_top1`, localization metrics as logged (%). "
                "diff = ours - paper.", ""]
    for table in _table_order(lines):
        rows = [line for line in lines if line["table"] == table]
        counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "unfinished", "missing")}
        out += [f"## {table}", "",
                f"{counts['ok']} finished, {counts['unfinished']} unfinished, {counts['missing']} missing.", "",
                "| row | preset | metric | paper | ours | diff | run | status |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ours = _fmt(r["ours"])
            if ours and (r.get("test_evaluations") or 0) > 1:
                ours += f" (test evaluated {r['test_evaluations']}x)"  # the field reports it once
            run = f"`{r['run']}`" + (f" ({r['varies']})" if r["varies"] else "") if r["run"] else ""
            out.append(f"| {r['row']} | {r['preset']} | {r['metric']} | {_fmt(r['paper'])} | {ours} | "
                       f"{_fmt(r['diff'])} | {run} | {r['status']} |")
        out.append("")
    path.write_text("\n".join(out))


def write_csv(lines: Sequence[dict[str, Any]], path: Path) -> None:
    """``report.csv``: one line per (row, metric, run), numbers unrounded, empty when missing."""
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        writer.writeheader()
        for line in lines:
            writer.writerow({key: "" if line[key] is None else line[key] for key in FIELDS})


def slug(name: str) -> str:
    """A file-name-safe form of a table name (``Table 2`` -> ``table_2``)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "table"


def write_plots(lines: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One bar plot per table: the paper's number and ours for each (row, metric, run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for table in _table_order(lines):
        rows = [line for line in lines if line["table"] == table]
        labels = [f"{r['row']}\n{r['metric'].split('/')[-1]}" + (f"\n{r['run']}" if r["run"] else "")
                  for r in rows]
        x = range(len(rows))
        figure, axes = plt.subplots(figsize=(max(4.0, 1.3 * len(rows) + 1.5), 4.5))
        axes.bar([i - 0.2 for i in x], [r["paper"] for r in rows], 0.4, label="paper", color="#999999")
        axes.bar([i + 0.2 for i in x], [r["ours"] if r["ours"] is not None else 0.0 for r in rows],
                 0.4, label="ours", color="#1f77b4")
        for i, r in zip(x, rows, strict=True):
            if r["ours"] is None:
                axes.text(i + 0.2, 0.5, r["status"], rotation=90, ha="center", va="bottom", fontsize=7)
        axes.set_xticks(list(x), labels, fontsize=7)
        axes.set_ylabel("%")
        axes.set_title(table)
        axes.legend()
        figure.tight_layout()
        path = out_dir / f"{slug(table)}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def make_report(folder: str | Path, out: str | Path | None = None, presets_dir: str | Path | None = None,
                all_tables: bool = False) -> list[dict[str, Any]]:
    """Collect the runs under ``folder`` and write report.md, report.csv and the plots into
    ``out`` (default ``<folder>/report``); returns the report's lines."""
    root = Path(folder).expanduser().resolve()
    presets = load_presets(Path(presets_dir) if presets_dir else PRESETS_DIR)
    runs = find_runs(root)
    attach_eval_runs(runs, presets)
    if not runs and not all_tables:
        raise UserError(f"No run folder (holding .hydra/config.yaml) under {root}. Pass the folder "
                        "of a sweep (outputs/train/multiruns/<time>) or of runs, or --all to list "
                        "every preset's row as missing.")
    lines = report_lines(runs, presets, all_tables)
    out_dir = Path(out).expanduser() if out else root / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    from camexp.report_runs import run_rows, runs_markdown, write_runs_csv, write_runs_plot

    rows = run_rows(runs)
    write_markdown(lines, out_dir / "report.md", root, preamble=runs_markdown(rows))
    write_csv(lines, out_dir / "report.csv")
    write_plots(lines, out_dir)
    if rows:
        write_runs_csv(rows, out_dir / "runs.csv")
        write_runs_plot(rows, out_dir / "runs.png")
    field_table = write_field_table(runs, presets, out_dir)
    if field_table:
        with (out_dir / "report.md").open("a") as report:
            report.write("\n" + field_table)
        print(field_table)
    finished = sum(run.metrics is not None for run in runs)
    paper_runs = {line["run"] for line in lines if line["run"]}
    print(f"camexp.report: {len(runs)} runs ({finished} finished, {len(runs) - finished} unfinished): "
          f"{len(rows)} rows in the runs table; {len(paper_runs)} runs in the paper tables"
          + ("" if lines else " (no run of an experiment preset: paper tables need experiment=...)")
          + f", {sum(line['status'] == 'missing' for line in lines)} missing lines; written to {out_dir}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m camexp.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a sweep, runs or run folder")
    parser.add_argument("--out", default=None, help="output folder (default: <folder>/report)")
    parser.add_argument("--presets", default=None, help="experiment presets folder (default: conf/experiment)")
    parser.add_argument("--all", action="store_true", dest="all_tables",
                        help="list every preset's tables, not only those with runs")
    args = parser.parse_args(argv)
    exit_on_user_error(lambda: make_report(args.folder, args.out, args.presets, args.all_tables))


if __name__ == "__main__":
    main()

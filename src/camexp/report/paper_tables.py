"""The paper tables of the report: one line per (paper row, metric, run), as Markdown, CSV and
bar plots (see :mod:`camexp.report` for the units)."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from camexp.report.collect import Run, derived_metrics
from camexp.report.published import BOX_RULE_METRICS, PaperRow, same_box_rule, scored_box_rule

# camexp's metrics shown beside the rows scored with a paper's own box rule (those papers
# publish neither): no paper number
FIELD_METRICS = ("test/MaxBoxAccV2", "test/PxAP")
FIELDS = ("table", "row", "preset", "metric", "paper", "ours", "diff", "run", "status", "overrides",
          "test_evaluations")

def _fmt(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"

def report_lines(runs: Sequence[Run], published: Sequence[PaperRow],
                 all_tables: bool = False) -> list[dict[str, Any]]:
    """One line per (paper row, metric, run): runs in order, then the rows without a run that
    have a recipe (``missing``). Tables without any run are left out unless ``all_tables``."""
    lines: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for run in runs:
        numbers = derived_metrics(run.metrics) if run.metrics is not None else None
        rule = scored_box_rule(run)
        for paper_row in run.paper:
            seen.add((paper_row.table, paper_row.row))
            same_rule = paper_row.box is None or same_box_rule(paper_row.box, rule)
            for metric, paper_value in _with_field_metrics(paper_row):
                ours = numbers.get(metric) if numbers is not None else None
                status = run.status if numbers is None else "ok" if ours is not None else "no metric"
                if metric in BOX_RULE_METRICS and not same_rule and numbers is not None:
                    ours, status = None, "other box rule"
                lines.append({
                    "table": paper_row.table, "row": paper_row.row, "preset": run.preset or "",
                    "metric": metric, "paper": paper_value, "ours": ours,
                    "diff": None if ours is None or paper_value is None else ours - paper_value,
                    "run": run.run_id,
                    "status": status, "overrides": " ".join(run.overrides),
                    "test_evaluations": run.test_evaluations if metric.startswith("test/") else None,
                })
    _mark_varying_overrides(lines)
    tables = {line["table"] for line in lines}
    for paper_row in published:
        if (paper_row.table, paper_row.row) in seen or not paper_row.recipe:
            continue
        if not all_tables and paper_row.table not in tables:
            continue
        seen.add((paper_row.table, paper_row.row))
        for metric, paper_value in paper_row.metrics.items():
            lines.append({"table": paper_row.table, "row": paper_row.row, "preset": paper_row.preset,
                          "metric": metric, "paper": paper_value, "ours": None, "diff": None,
                          "run": "", "status": "missing", "overrides": "", "varies": "",
                          "test_evaluations": None})
    order = {table: i for i, table in enumerate(_table_order(lines))}
    return sorted(lines, key=lambda line: order[line["table"]])

def _with_field_metrics(paper_row: PaperRow) -> list[tuple[str, float | None]]:
    """The row's published metrics and, for a row scored with its own box rule, the field's
    MaxBoxAccV2 and PxAP beside them (no published value: shown as ours only)."""
    pairs: list[tuple[str, float | None]] = list(paper_row.metrics.items())
    if paper_row.box is not None:
        pairs += [(metric, None) for metric in FIELD_METRICS if metric not in paper_row.metrics]
    return pairs


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
        counts = {status: sum(r["status"] == status for r in rows)
                  for status in ("ok", "unfinished", "failed to start", "missing")}
        out += [f"## {table}", "",
                f"{counts['ok']} finished, {counts['unfinished']} unfinished, "
                + (f"{counts['failed to start']} failed to start, " if counts["failed to start"] else "")
                + f"{counts['missing']} missing. tests: the distinct test evaluations (checkpoint, "
                "settings) of the run's experiment in the test ledger (the field reports one).", "",
                "| row | preset | metric | paper | ours | diff | tests | run | status |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            tests = r.get("test_evaluations")
            shown = "" if r["ours"] is None or tests is None else str(tests)
            run = f"`{r['run']}`" + (f" ({r['varies']})" if r["varies"] else "") if r["run"] else ""
            paper = _fmt(r["paper"]) or ("not published" if r["run"] else "")
            out.append(f"| {r['row']} | {r['preset']} | {r['metric']} | {paper} | "
                       f"{_fmt(r['ours'])} | {_fmt(r['diff'])} | {shown} | {run} | {r['status']} |")
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
        axes.bar([i - 0.2 for i in x], [r["paper"] if r["paper"] is not None else 0.0 for r in rows], 0.4,
                 label="paper", color="#999999")
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

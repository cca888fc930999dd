"""Build the report of a folder of runs: the runs table, the paper tables, the field's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camexp.core.errors import UserError
from camexp.report.collect import PRESETS_DIR, attach_eval_runs, find_runs, load_presets
from camexp.report.field_table import write_field_table
from camexp.report.paper_tables import report_lines, write_csv, write_markdown, write_plots
from camexp.report.runs_table import run_rows, runs_markdown, write_runs_csv, write_runs_plot


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

"""Build the report of a folder of runs: the runs table, the paper tables, the field's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camexp.core.errors import UserError
from camexp.report.collect import find_runs
from camexp.report.field_table import write_field_table
from camexp.report.paper_tables import report_lines, write_csv, write_markdown, write_plots
from camexp.report.published import PUBLISHED, attach_published, load_published
from camexp.report.runs_table import run_rows, runs_markdown, write_runs_csv, write_runs_plot


def make_report(folder: str | Path, out: str | Path | None = None,
                published: str | Path | None = None, all_tables: bool = False) -> list[dict[str, Any]]:
    """Collect the runs under ``folder``, compare them with the published numbers (default
    ``conf/published.yaml``) and write report.md, report.csv and the plots into ``out``
    (default ``<folder>/report``); returns the report's lines."""
    root = Path(folder).expanduser().resolve()
    published_rows = load_published(published or PUBLISHED)
    runs = find_runs(root)
    attach_published(runs, published_rows)
    if not runs and not all_tables:
        raise UserError(f"No run folder (holding .hydra/config.yaml) under {root}. Pass the folder "
                        "of a sweep (outputs/train/multiruns/<time>) or of runs, or --all to list "
                        "every published row with a recipe as missing.")
    lines = report_lines(runs, published_rows, all_tables)
    out_dir = Path(out).expanduser() if out else root / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = run_rows(runs)
    write_markdown(lines, out_dir / "report.md", root, preamble=runs_markdown(rows))
    write_csv(lines, out_dir / "report.csv")
    write_plots(lines, out_dir)
    if rows:
        write_runs_csv(rows, out_dir / "runs.csv")
        write_runs_plot(rows, out_dir / "runs.png")
    field_table = write_field_table(runs, published_rows, out_dir)
    if field_table:
        with (out_dir / "report.md").open("a") as report:
            report.write("\n" + field_table)
        print(field_table)
    finished = sum(run.metrics is not None for run in runs)
    failed = sum(run.status == "failed to start" for run in runs)
    paper_runs = {line["run"] for line in lines if line["run"]}
    print(f"camexp.report: {len(runs)} runs ({finished} finished, {len(runs) - finished - failed} "
          f"unfinished{f', {failed} failed to start' if failed else ''}): "
          f"{len(rows)} rows in the runs table; {len(paper_runs)} runs in the paper tables"
          + ("" if lines else " (no run matches a row of the published numbers, conf/published.yaml)")
          + f", {sum(line['status'] == 'missing' for line in lines)} missing lines; written to {out_dir}")
    return lines

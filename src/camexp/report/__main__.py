"""``python -m camexp.report <folder>``: the report of a folder of runs (see :mod:`camexp.report`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import camexp.report
from camexp.core.errors import exit_on_user_error
from camexp.report.build import make_report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m camexp.report", description=camexp.report.__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a sweep, runs or run folder")
    parser.add_argument("--out", default=None, help="output folder (default: <folder>/report)")
    parser.add_argument("--published", default=None,
                        help="the published numbers (default: conf/published.yaml)")
    parser.add_argument("--all", action="store_true", dest="all_tables",
                        help="list every table of the published numbers, not only those with runs")
    args = parser.parse_args(argv)
    exit_on_user_error(lambda: make_report(args.folder, args.out, args.published, args.all_tables))


if __name__ == "__main__":
    main()

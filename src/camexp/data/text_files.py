"""What every dataset reader shares: its text files' lines (UTF-8, numbered), paths that
must stay inside the dataset's folder, and line faults recorded rather than raised one by one."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from camexp.core.errors import DatasetError, UserError


def check_inside(relative: str, where: str) -> str:
    """Refuse a path from a dataset's text files that would leave the dataset's folder.

    ``relative`` must be relative and free of ``..`` parts (``where`` names the file and line).
    """
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts:
        raise DatasetError(
            f"{where}: the path {relative!r} points outside the dataset folder (absolute, or "
            "with '..'). Paths in dataset files must be relative to the dataset's folder; "
            "fix the line."
        )
    return relative


def text_lines(path: str | Path, error: type[UserError] = DatasetError) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line of a dataset text file, as UTF-8.

    A UTF-8 byte-order mark at the start (as some editors save) is accepted; bytes that are not
    UTF-8 raise ``error`` naming the file, the line and the byte.
    """
    path = Path(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise error(
                    f"{path}, line {number}: byte {bad.start + 1} of the line "
                    f"({raw[bad.start:bad.start + 1]!r}) is not UTF-8 text. Save the file as UTF-8 "
                    "(e.g. iconv -f latin1 -t utf-8 FILE), or restore it from the original download."
                ) from None
            yield number, text


# line faults kept in full (a damaged file could have millions); the rest are counted
MAX_READ_PROBLEMS = 1000


@dataclass(frozen=True)
class ReadProblem:
    """A fault of one line of a dataset's text files, found while reading (kind, message; the
    image it concerns, where known, so that a reader can leave that image out)."""

    kind: str
    message: str
    image_id: str | None = None


def record_fault(problems: list[ReadProblem] | None, kind: str, error: UserError,
                 image_id: str | None = None) -> None:
    """A fault of one line (or one annotation file): kept in ``problems``, so that the reading
    goes on and ``check_data`` lists them all, or raised when there is no list."""
    if problems is None:
        raise error
    problems.append(ReadProblem(kind, str(error), image_id))


def capped(problems: list[ReadProblem], where: str) -> list[ReadProblem]:
    """``problems`` with at most ``MAX_READ_PROBLEMS`` kept, the rest counted in one more."""
    if len(problems) <= MAX_READ_PROBLEMS:
        return problems
    more = len(problems) - MAX_READ_PROBLEMS
    return [*problems[:MAX_READ_PROBLEMS], ReadProblem("more faults", (
        f"... and {more} more line faults in {where} (the first {MAX_READ_PROBLEMS} are listed); "
        "the files may be damaged: restore them."))]

"""One published row of ``conf/published.yaml``, as the report reads it: a leaf, so that the
runs (:mod:`camexp.report.collect`) can hold the rows they are compared with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PaperRow:
    """One published row: where it comes from, what it describes, its numbers (metric -> value)."""

    table: str
    row: str
    metrics: dict[str, float]
    source: str = ""
    dataset: str = ""
    backbone: str | None = None
    method: str = ""
    pooling: str | None = None
    maps: str = "cam"
    settings: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    box: dict[str, Any] | None = None

    @property
    def preset(self) -> str:
        """The recipe, shown in the report's ``preset`` column for rows without a run."""
        return self.recipe or ""

"""The model summary at the start of training, without Lightning's FLOPs column.

Lightning 2.6 adds a FLOPs column and a "Total FLOPs" line, both 0 for a model without an
``example_input_array`` (camexp's): noise to a reader. This summary lists the layers and the
parameter counts only, printed and written to the run's log file.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import (
    get_formatted_model_size,
    get_human_readable_count,
)
from typing_extensions import override

from camexp.core.messages import say

DROPPED_COLUMNS = ("FLOPs",)


def format_summary(summary_data: list[tuple[str, list[str]]], total_parameters: int,
                   trainable_parameters: int, model_size: float) -> str:
    """A plain-text table of ``summary_data`` (column name, values) without FLOPs, then the
    parameter counts."""
    columns = [(name, [str(v) for v in values]) for name, values in summary_data
               if name not in DROPPED_COLUMNS]
    widths = [max([len(name), *(len(v) for v in values)]) for name, values in columns]
    rows = [" | ".join(name.ljust(w) for (name, _), w in zip(columns, widths, strict=True))]
    rows.append("-" * len(rows[0]))
    for i in range(len(columns[0][1]) if columns else 0):
        rows.append(" | ".join(values[i].ljust(w) for (_, values), w in zip(columns, widths, strict=True)))
    rows += [
        f"{get_human_readable_count(trainable_parameters):<10}Trainable params",
        f"{get_human_readable_count(total_parameters - trainable_parameters):<10}Non-trainable params",
        f"{get_human_readable_count(total_parameters):<10}Total params",
        f"{get_formatted_model_size(model_size):<10}Total estimated model params size (MB)",
    ]
    return "\n".join(rows)


class CompactModelSummary(ModelSummary):
    """Lightning's layer summary (``max_depth`` levels) without the FLOPs column."""

    @staticmethod
    @override
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int,
                  trainable_parameters: int, model_size: float, total_training_modes: dict[str, int],
                  total_flops: int = 0, **summarize_kwargs: Any) -> None:
        say(format_summary(summary_data, total_parameters, trainable_parameters, model_size))

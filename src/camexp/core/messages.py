"""camexp's own messages: printed to the console and written to the run's log file.

Hydra's job logging writes ``<run>/<task>.log`` (``train.log``, ``eval.log``) through a file
handler on the root logger; :func:`say` prints a message unchanged (as ``print`` did) and
hands the same line to those file handlers, so the log holds the run folder, the checks, the
resume decisions, the progress lines and the metrics summary too.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("camexp")


def log_files() -> list[logging.FileHandler]:
    """The file handlers of the root logger (Hydra's ``<task>.log``); none outside Hydra."""
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def say(message: str, level: int = logging.INFO, console: bool = True) -> None:
    """Print ``message`` (to stdout; warnings to stderr) and write it to the run's log file.

    ``console=False`` writes the log file only (e.g. per-epoch lines while a progress bar
    draws on a terminal).
    """
    if console:
        stream = sys.stderr if level >= logging.WARNING else sys.stdout
        print(message, file=stream, flush=True)
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for handler in log_files():
        if level >= handler.level:
            handler.handle(record)
            handler.flush()


class _DropMessages(logging.Filter):
    """Drops records whose message contains one of ``fragments``."""

    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(fragment in message for fragment in self.fragments)


# Lightning's rank-zero messages go through these loggers (pytorch's wins for the trainer)
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def silence_framework_notices() -> None:
    """Drop Lightning's notices that say nothing to a camexp user: the LitLogger tip printed on
    every run (camexp's loggers are configured by ``logger=``) and the note that camexp's own
    model summary (without the FLOPs column, :mod:`camexp.callbacks.summary`) replaces the
    default one. Idempotent."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages("litlogger", "LitLogger",
                                           "Skipping setting a default `ModelSummary`"))


# the metrics of the closing summary line, with their units
SUMMARY_METRICS = (("acc_top1", "top-1", "pct"), ("acc_top5", "top-5", "pct"),
                   ("MaxBoxAccV2", "MaxBoxAccV2", "num"), ("MaxBoxAcc", "MaxBoxAcc", "num"),
                   ("loc_top1_err", "top-1 loc. err", "num"), ("loc_gt_known", "GT-known loc.", "num"),
                   ("PxAP", "PxAP", "num"), ("MaxBoxAccV2_center_baseline", "centre baseline", "num"))


def summary_line(metrics: dict[str, float]) -> str:
    """``test: top-1 81.2%, top-5 95.0%, MaxBoxAccV2 30.1, ...`` (the test split, else val)."""
    for stage in ("test", "val"):
        shown = []
        for key, name, unit in SUMMARY_METRICS:
            value = metrics.get(f"{stage}/{key}")
            if value is not None:
                shown.append(f"{name} {100 * value:.1f}%" if unit == "pct" else f"{name} {value:.1f}")
        if shown:
            return f"camexp: {stage}: " + ", ".join(shown)
    return ""

"""The test-evaluation ledger: how many times the test split was evaluated for one config.

The field's protocol (docs/protocol.md and docs/methods.md) chooses hyper-parameters on the val split and reports
the test split once. Every evaluation of the test split (``camexp.train`` with ``test=true``,
``camexp.eval``) appends one line to ``${paths.log_dir}/test_ledger.jsonl``, keyed by a hash of
the run's composed config less what does not change the experiment (paths, loggers, the
run's own bookkeeping: see :data:`IGNORED`). The run folder's ``test_record.json`` says how many
times that config's test split has been evaluated so far, this run included;
``camexp.report`` marks numbers whose config was tested more than once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

LEDGER_NAME = "test_ledger.jsonl"
RECORD_NAME = "test_record.json"
# top-level keys and dotted paths that say where or how a run is kept, not what it trains or
# tests: two runs differing only in these evaluate the same experiment
IGNORED = (
    "paths", "hydra", "logger", "tags", "task_name", "train", "test", "resume", "ckpt_path",
    "print_config", "optimized_metric", "paper", "paper_preset",
    "trainer.enable_progress_bar", "trainer.default_root_dir", "callbacks.cam_pictures",
    "callbacks.lr_monitor",
)


def _drop(node: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def config_key(cfg: DictConfig | dict) -> dict[str, Any]:
    """The part of a config that defines the experiment, as plain containers.

    Interpolations are kept as written (``${paths.output_dir}/checkpoints`` is the same string
    in every run), so run folders and machines do not change the key.
    """
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else \
        json.loads(json.dumps(cfg))
    for dotted in IGNORED:
        _drop(plain, dotted)
    return plain


def config_hash(cfg: DictConfig | dict) -> str:
    """A short, stable hash of :func:`config_key` (sorted keys, JSON)."""
    text = json.dumps(config_key(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_test_evaluation(cfg: DictConfig | dict, log_dir: str | Path, run_dir: str | Path,
                           what: str = "train") -> dict[str, Any]:
    """Append this run's test evaluation to the ledger under ``log_dir`` and write the run's
    ``test_record.json``; returns the record (``test_evaluations`` counts this one)."""
    digest = config_hash(cfg)
    ledger = Path(log_dir) / LEDGER_NAME
    ledger.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(run_dir).resolve()
    entry = {"config_hash": digest, "run": str(run_dir), "by": what,
             "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with ledger.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # jobs of a sweep may finish at the same moment
        handle.seek(0)
        earlier = [line for line in (json.loads(text) for text in handle if text.strip())
                   if line.get("config_hash") == digest]
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)
    record = {"config_hash": digest, "test_evaluations": len(earlier) + 1,
              "earlier_runs": [line["run"] for line in earlier], "ledger": str(ledger.resolve())}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    if earlier:
        print(f"camexp: the test split of this config ({digest}) has now been evaluated "
              f"{len(earlier) + 1} times (ledger {ledger}); the field reports it once.")
    return record


def read_test_record(run_dir: str | Path) -> dict[str, Any] | None:
    """A run folder's ``test_record.json``, or None."""
    path = Path(run_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None

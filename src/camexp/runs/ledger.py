"""The test-evaluation ledger: how many distinct times the test split was looked at for one
experiment.

The field's protocol (docs/protocol.md and docs/methods.md) chooses hyper-parameters on the val
split and reports the test split once. Every evaluation of the test split (``camexp.train``
with ``test=true``, ``camexp.eval``) appends one line to ``${paths.log_dir}/test_ledger.jsonl``:

- ``config_hash``: the experiment, a hash of the training run's composed config less what does
  not change the experiment (paths, loggers, the run's own bookkeeping: :data:`IGNORED`); an
  eval counts under the config that trained its checkpoint;
- ``checkpoint``: a digest of the tested network's weights (:func:`weights_digest`), so the same
  checkpoint is recognised under any file name or folder, and a retraining that gives the same
  weights is the same checkpoint;
- ``settings``: a hash of the settings that decide the test's numbers
  (:func:`evaluation_settings`: the resolved data and localization settings and the precision).

An experiment's count is the number of **distinct (checkpoint, settings) pairs** among its
lines: re-evaluating the same checkpoint with the same settings (a reproduction check) learns
nothing new about the test split and is not counted again; another checkpoint, or the same one
scored another way (a threshold, a map method), is. The run folder's ``test_record.json`` holds
the count when the run ended; ``camexp.report`` reads the ledger itself, so its tables show the
count as it is now.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from camexp.core.messages import say

LEDGER_NAME = "test_ledger.jsonl"
RECORD_NAME = "test_record.json"
# the record's key naming the checkpoint file a run tested (relative to the run folder), which
# camexp.eval ckpt_path=<run folder> evaluates
RECORD_TESTED = "tested"
# top-level keys and dotted paths that say where or how a run is kept, not what it trains or
# tests: two runs differing only in these evaluate the same experiment
IGNORED = (
    "paths", "hydra", "logger", "tags", "task_name", "train", "test", "resume", "ckpt_path",
    "print_config", "optimized_metric", "paper", "paper_preset", "save_maps",
    "trainer.enable_progress_bar", "trainer.default_root_dir", "callbacks.cam_pictures",
    "callbacks.lr_monitor",
)
# data settings of the loader or of training only: they do not change a test's numbers
LOADER_KEYS = frozenset({"batch_size", "eval_batch_size", "num_workers", "pin_memory",
                         "persistent_workers", "check_sample", "on_bad_image", "epochs", "seed",
                         "check_eval_splits", "decode_device"})


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


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(cfg: DictConfig | dict) -> str:
    """A short, stable hash of :func:`config_key` (sorted keys, JSON)."""
    return _digest(config_key(cfg))


def weights_digest(state_dict: Mapping[str, Any]) -> str:
    """A digest of a network's weights: every tensor's name, dtype, shape and bytes (names
    without ``torch.compile``'s ``_orig_mod.``, so a compiled network is the same checkpoint)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name.replace('_orig_mod.', '')}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def evaluation_settings(cfg: DictConfig) -> dict[str, Any]:
    """The settings that decide a test's numbers besides the weights: the resolved ``data``
    (less the loader's and training's keys, :data:`LOADER_KEYS`) and ``localization`` groups,
    and ``trainer.precision``."""
    settings: dict[str, Any] = {}
    for group in ("data", "localization"):
        node = cfg.get(group)
        if node is not None:
            plain = OmegaConf.to_container(node, resolve=True)
            settings[group] = {k: v for k, v in plain.items() if group != "data" or k not in LOADER_KEYS}
    trainer = cfg.get("trainer")
    settings["precision"] = str(trainer.get("precision")) if trainer is not None else None
    return settings


def _pair(line: Mapping[str, Any]) -> tuple[str, str]:
    """The (checkpoint, settings) of a ledger line; a line of an older ledger, which has
    neither, is a pair of its own."""
    if line.get("checkpoint") and line.get("settings"):
        return str(line["checkpoint"]), str(line["settings"])
    return f"unknown:{line.get('run')}:{line.get('time')}", ""


def distinct_pairs(lines: Iterable[Mapping[str, Any]]) -> int:
    """How many distinct (checkpoint, settings) pairs ``lines`` hold."""
    return len({_pair(line) for line in lines})


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """Every readable line of a ledger ([] when it is absent)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    lines = []
    for row in text.splitlines():
        try:
            line = json.loads(row)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def ledger_counts(path: str | Path) -> dict[str, int]:
    """The count of distinct (checkpoint, settings) pairs per experiment (``config_hash``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for line in read_ledger(path):
        groups.setdefault(str(line.get("config_hash")), []).append(line)
    return {digest: distinct_pairs(lines) for digest, lines in groups.items()}


def record_test_evaluation(cfg: DictConfig | dict, log_dir: str | Path, run_dir: str | Path,
                           what: str = "train", checkpoint: str | None = None,
                           settings: Mapping[str, Any] | None = None,
                           tested: str | Path | None = None) -> dict[str, Any]:
    """Append this run's test evaluation to the ledger under ``log_dir`` and write the run's
    ``test_record.json``; returns the record.

    ``cfg``: the experiment's config (an eval passes its checkpoint's training config);
    ``checkpoint``: :func:`weights_digest` of the tested weights; ``settings``:
    :func:`evaluation_settings` of the test. The record's ``test_evaluations`` is the
    experiment's count of distinct (checkpoint, settings) pairs, this one included; ``repeats``
    the earlier runs of the same pair (a reproduction check, not counted again); ``tested``
    the checkpoint file the test loaded (kept relative to the run folder when inside it).
    """
    digest = config_hash(cfg)
    ledger = Path(log_dir) / LEDGER_NAME
    ledger.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(run_dir).resolve()
    entry = {"config_hash": digest, "checkpoint": checkpoint,
             "settings": _digest(settings) if settings is not None else None,
             "run": str(run_dir), "by": what, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with ledger.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # jobs of a sweep may finish at the same moment
        handle.seek(0)
        earlier = [line for line in (json.loads(text) for text in handle if text.strip())
                   if line.get("config_hash") == digest]
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)
    count = distinct_pairs([*earlier, entry])
    repeats = [line["run"] for line in earlier if _pair(line) == _pair(entry)]
    if tested:
        tested = Path(tested).resolve()
        tested = tested.relative_to(run_dir) if tested.is_relative_to(run_dir) else tested
    record = {"config_hash": digest, "checkpoint": checkpoint, "settings": entry["settings"],
              RECORD_TESTED: str(tested) if tested else None,
              "test_evaluations": count, "evaluations": len(earlier) + 1,
              "earlier_runs": [line["run"] for line in earlier], "repeats": repeats,
              "ledger": str(ledger.resolve())}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    if repeats:
        say(f"camexp: this test evaluation repeats {repeats[-1]} (the same checkpoint and "
            f"settings): a reproduction check, not another look at the test split. The test split "
            f"of this config ({digest}) has been evaluated for {count} distinct (checkpoint, "
            f"settings) pair(s) (ledger {ledger}).")
    elif earlier:
        say(f"camexp: the test split of this config ({digest}) has now been evaluated for {count} "
            f"distinct (checkpoint, settings) pairs (ledger {ledger}); the field reports it once.")
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

"""The end of a sweep: every trial's record, the best one as a ready experiment preset,
``trials.csv``, and one paragraph when no trial completed."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

from camexp.search.trials import TRIAL_FILE

PRESET_DIR = "best_trial"

PRESET_NAME = "best_trial"

# groups whose choice a preset repeats (hparams_search, debug and hydra/* are left out)
PRESET_GROUPS = ("data", "model", "method", "localization", "callbacks", "logger", "trainer", "paths")

def read_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    """The ``trial.json`` of every job folder of a sweep, with its folder and job number,
    ordered by job number; jobs that wrote none (killed) are listed as ``unfinished``."""
    trials = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name)):
        path = job / TRIAL_FILE
        record = json.loads(path.read_text()) if path.is_file() else {"status": "unfinished"}
        trials.append({**record, "job": int(job.name), "dir": job})
    return trials

def best_trial(trials: list[dict[str, Any]], direction: str = "maximize") -> dict[str, Any] | None:
    """The complete trial with the best finite value (the lowest job number on ties)."""
    done = [t for t in trials if t.get("status") == "complete" and t.get("value") is not None
            and math.isfinite(float(t["value"]))]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * float(t["value"]), t["job"]))

def preset_text(trial: dict[str, Any], sweep_dir: Path) -> str:
    """The best trial as an experiment preset: the trial's group choices, then its whole
    composed config (so the preset does not depend on the presets or defaults it came from),
    with ``test: true``."""
    job = trial["dir"]
    config = OmegaConf.load(job / ".hydra" / "config.yaml")
    choices = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.runtime.choices
    config.test = True
    config.optimized_metric = None  # a single run, not a search job
    body = OmegaConf.to_yaml(config)
    groups = [g for g in PRESET_GROUPS if choices.get(g) is not None]
    header = [
        "# @package _global_",
        f"# The best trial (job {trial['job']}) of the search {sweep_dir}:",
        f"#   {trial['objective']} = {trial['value']} on the val split",
        f"#   overrides: {' '.join(trial.get('overrides') or [])}",
        "# Train it and test it once (the ledger counts test evaluations of this config):",
        f"#   {preset_command(sweep_dir)}",
        "defaults:",
        *(f"  - override /{g}: {choices[g]}" for g in groups),
        "",
    ]
    return "\n".join(header) + body

def preset_command(sweep_dir: Path) -> str:
    return (f"python -m camexp.train --config-dir {sweep_dir / PRESET_DIR} "
            f"experiment={PRESET_NAME}")

def write_trials_csv(trials: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["job", "status", "objective", "value", "overrides"])
        for t in trials:
            writer.writerow([t["job"], t.get("status"), t.get("objective", ""),
                             "" if t.get("value") is None else t["value"],
                             " ".join(t.get("overrides") or [])])

def finish_search(sweep_dir: str | Path, direction: str = "maximize") -> Path | None:
    """Write ``trials.csv`` and, when a trial completed, ``best_trial/experiment/best_trial.yaml``
    in the sweep folder; return the preset's path (None when every trial failed)."""
    sweep_dir = Path(sweep_dir).resolve()
    trials = read_trials(sweep_dir)
    write_trials_csv(trials, sweep_dir / "trials.csv")
    best = best_trial(trials, direction)
    failed = sum(t.get("status") != "complete" for t in trials)
    if best is None:
        print(f"camexp: no trial of {sweep_dir} completed ({failed} failed or diverged; see "
              f"{sweep_dir / 'trials.csv'} and each trial's trial.json for why); no preset "
              "written. Narrow the ranges (a lower model.optim.lr) or fix the error, then search again.")
        return None
    preset = sweep_dir / PRESET_DIR / "experiment" / f"{PRESET_NAME}.yaml"
    preset.parent.mkdir(parents=True, exist_ok=True)
    preset.write_text(preset_text(best, sweep_dir))
    print(f"camexp: best trial: job {best['job']}, {best['objective']} = {best['value']} "
          f"({len(trials) - failed} of {len(trials)} trials completed). Preset: {preset}\n"
          f"Train it and test it once: {preset_command(sweep_dir)}")
    return preset


# the search of this process (set when it starts), for the message when no trial completed
_SEARCH: dict[str, str] = {}

class BestTrialPreset(HydraCallback):
    """Hydra callback of ``hparams_search``: after the last trial, write the best one's preset."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _SEARCH.update(dir=str(config.hydra.sweep.dir),
                       direction=str(config.hydra.sweeper.get("direction", "maximize")))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        direction = str(config.hydra.sweeper.get("direction", "maximize"))
        finish_search(config.hydra.sweep.dir, direction)

def exit_if_no_trial_completed(error: BaseException) -> None:
    """hydra-optuna-sweeper ends a search in which every trial failed with optuna's
    ``ValueError: No trials are completed yet.`` (and a traceback): write ``trials.csv``, say
    so in one paragraph (:func:`finish_search`) and exit 1 instead."""
    if not (isinstance(error, ValueError) and "No trials are completed yet" in str(error)
            and _SEARCH):
        return
    finish_search(_SEARCH["dir"], _SEARCH["direction"])
    sys.exit(1)

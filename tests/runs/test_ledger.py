"""The test ledger counts distinct (checkpoint, settings) pairs per experiment: re-testing the
same checkpoint with the same settings (a reproduction check) is not another look at the test
split; another checkpoint, or the same one scored another way, is."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf, open_dict

from camexp.eval import evaluate
from camexp.report.build import make_report
from camexp.runs.ledger import config_hash, ledger_counts, record_test_evaluation, weights_digest
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config

BASE = {"seed": 1, "model": {"optim": {"lr": 0.1}}, "paths": {"output_dir": "/a"}}


def test_the_count_is_of_distinct_checkpoint_and_settings_pairs(tmp_path: Path, capsys) -> None:
    logs = tmp_path / "logs"
    first = record_test_evaluation(BASE, logs, tmp_path / "train", "train", "w1", {"data": 1})
    again = record_test_evaluation(BASE, logs, tmp_path / "eval1", "eval", "w1", {"data": 1})
    assert (first["test_evaluations"], again["test_evaluations"]) == (1, 1)
    assert again["repeats"] == [str((tmp_path / "train").resolve())] and again["evaluations"] == 2
    assert "repeats" in capsys.readouterr().out
    scored_otherwise = record_test_evaluation(BASE, logs, tmp_path / "eval2", "eval", "w1", {"data": 2})
    retrained = record_test_evaluation(BASE, logs, tmp_path / "train2", "train", "w2", {"data": 1})
    assert (scored_otherwise["test_evaluations"], retrained["test_evaluations"]) == (2, 3)
    other = record_test_evaluation({**BASE, "seed": 2}, logs, tmp_path / "x", "train", "w1", {"data": 1})
    assert other["test_evaluations"] == 1  # another experiment
    # a line of an older ledger (no checkpoint, no settings) is a pair of its own
    with (logs / "test_ledger.jsonl").open("a") as ledger:
        ledger.write(json.dumps({"config_hash": config_hash(BASE), "run": "/old", "time": "t"}) + "\n")
    assert ledger_counts(logs / "test_ledger.jsonl") == {config_hash(BASE): 4, config_hash({**BASE, "seed": 2}): 1}


def test_the_weights_digest_names_the_weights_not_the_file() -> None:
    net = torch.nn.Linear(3, 2)
    state = {key: value.clone() for key, value in net.state_dict().items()}
    compiled = {f"_orig_mod.{key}": value.clone() for key, value in state.items()}
    assert weights_digest(state) == weights_digest(compiled)
    with torch.no_grad():
        net.bias[0] += 1e-6
    assert weights_digest(net.state_dict()) != weights_digest(state)


def _hydra_files(cfg, run: Path) -> None:
    """The .hydra/ record the CLI writes (the report finds runs by it)."""
    (run / ".hydra").mkdir(exist_ok=True)
    with open_dict(cfg):
        hydra_cfg = cfg.pop("hydra")
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": hydra_cfg.runtime.choices}}}),
                   run / ".hydra" / "hydra.yaml")


def test_an_eval_that_reproduces_the_training_runs_test_is_not_counted_again(
        tmp_path: Path, data_dir: Path) -> None:
    quiet = ["trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1",
             "localization.cam_curve_interval=0.01"]
    run = tmp_path / "runs" / "train"
    cfg = compose_config("train", [*TINY_SYNTHETIC, *quiet, "trainer.max_epochs=2",
                                   "trainer.limit_train_batches=2"], run, data_dir)
    cfg.paths.log_dir = str(tmp_path / "logs")
    train(cfg)
    _hydra_files(cfg, run)
    trained = json.loads((run / "test_record.json").read_text())
    best = next((run / "checkpoints").glob("epoch_*.ckpt"))

    def eval_run(name: str, *extra: str) -> dict:
        cfg = compose_config("eval", [*TINY_SYNTHETIC, *quiet, f"ckpt_path={best}", *extra],
                             tmp_path / "runs" / name, data_dir)
        cfg.paths.log_dir = str(tmp_path / "logs")
        evaluate(cfg)
        _hydra_files(cfg, tmp_path / "runs" / name)
        return json.loads((tmp_path / "runs" / name / "test_record.json").read_text())

    same = eval_run("same")  # the README's reproduction check: the run's tested checkpoint
    assert same["checkpoint"] == trained["checkpoint"] and same["settings"] == trained["settings"]
    assert same["test_evaluations"] == 1 and same["repeats"] == [str(run.resolve())]
    other = eval_run("fraction", "localization.paper_fraction=0.3")
    assert other["test_evaluations"] == 2 and other["repeats"] == []
    # every table that shows a test number shows the ledger's count as it is now
    make_report(tmp_path / "runs", tmp_path / "report")
    with (tmp_path / "report" / "runs.csv").open() as file:
        counts = {row["run"]: row["test_evaluations"] for row in csv.DictReader(file)}
    assert counts == {"train": "2", "same": "2", "fraction": "2"}
    runs_table = (tmp_path / "report" / "report.md").read_text()
    assert "| tests | warnings | folder | status |" in runs_table

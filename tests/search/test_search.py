"""The field's search (hparams_search=wsol|wsol_tpe): the composed space, the trial records, the
best trial's preset and its single test run, the test ledger, failed and diverged trials, DDP
trials."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from camexp.callbacks.divergence import DivergenceGuard
from camexp.core.errors import TrainingDiverged
from camexp.runs.ledger import config_hash, record_test_evaluation
from camexp.search.results import best_trial
from camexp.search.space import has_patch_side, pooling_space
from tests.helpers.configs import CONF_DIR, TINY_SYNTHETIC
from tests.helpers.search import CONFIG_NAME, write_method_conf

REPO = Path(__file__).resolve().parents[2]
QUICK = [*TINY_SYNTHETIC, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1",
         "localization.cam_curve_interval=0.05", "print_config=false", "tags=[search-test]"]


@pytest.fixture(scope="module")
def method_conf(tmp_path_factory) -> Path:
    return write_method_conf(tmp_path_factory.mktemp("conf"))


def _compose(method_conf: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(method_conf), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=[f"hydra.searchpath=[file://{CONF_DIR}]", *overrides],
                       return_hydra_config=True)


def _cli(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "camexp.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _sweep(cwd: Path) -> Path:
    sweeps = list((cwd / "outputs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


# -- the composed space ------------------------------------------------------------------------


def test_wsol_space_common_method_and_data_parts(method_conf: Path) -> None:
    cfg = _compose(method_conf, ["hparams_search=wsol", "method=adl", "data=cub"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert sweeper.n_trials == 30 and sweeper.direction == "maximize"
    assert sweeper.max_failure_rate == 1.0
    assert dict(sweeper.params) == {
        "model.optim.lr": "tag(log, interval(1e-5, 1.0))",
        "model.optim.weight_decay": "tag(log, interval(1e-5, 1.0))",
        "model.scheduler.name": "step",
        "model.scheduler.gamma": "0.1",
        "test": "False",
        "model.scheduler.step_size": "int(interval(5, 45))",
        "data.val_per_class": "5",
        "optimized_metric": "val/MaxBoxAccV2",
        "callbacks.model_checkpoint.monitor": "val/MaxBoxAccV2",
        "method.drop_rate": "interval(0.0, 1.0)",
        "method.threshold": "interval(0.0, 1.0)",
    }
    assert cfg.optimized_metric == "val/MaxBoxAccV2"
    assert "best_trial" in cfg.hydra.callbacks


@pytest.mark.parametrize(("method", "keys"), [
    ("cam", set()), ("acol", {"method.threshold"}), ("cutmix", {"method.beta", "method.prob"}),
    ("has", {"method.drop_rate"}),
    ("spg", {f"method.threshold_{i}{s}" for i in (1, 2, 3) for s in "hl"}),
])
def test_each_method_adds_its_own_space(method_conf: Path, method: str, keys: set) -> None:
    cfg = _compose(method_conf, ["hparams_search=wsol", f"method={method}"])
    assert {k for k in cfg.hydra.sweeper.params if k.startswith("method.")} == keys
    for key in keys:
        assert cfg.hydra.sweeper.params[key] == "interval(0.0, 1.0)"
        assert OmegaConf.select(cfg, key) is not None  # the stand-in has the key the space names
    own = "has_patch_side" if method == "has" else "pooling_space"  # HaS's draws the pooling's too
    assert cfg.hydra.sweeper.custom_search_space == f"camexp.search.space.{own}"


def test_bas_and_nlccam_spaces(method_conf: Path) -> None:
    bas = _compose(method_conf, ["hparams_search=wsol", "method=bas"]).hydra.sweeper.params
    assert (bas["method.area_weight"], bas["method.s2_weight"]) == ("interval(0.0, 3.0)", "interval(0.0, 1.0)")
    nlccam = _compose(method_conf, ["hparams_search=wsol", "method=nlccam"]).hydra.sweeper.params
    assert nlccam["method.positive_ranks"] == "int(interval(1, 100))"
    # a drawn number replaces BAS's per-family table, and the run takes it
    cfg = _compose(method_conf, ["method=bas", "method.area_weight=1.7"])
    assert cfg.method.area_weight == 1.7 and cfg.method.s2_weight.vgg == 0.0


class _Trial:
    """Records what a search space asks an Optuna trial for."""

    def __init__(self) -> None:
        self.asked: dict[str, tuple] = {}

    def suggest_float(self, name, low, high, log=False):
        self.asked[name] = ("float", low, high, log)

    def suggest_int(self, name, low, high):
        self.asked[name] = ("int", low, high)

    def suggest_categorical(self, name, choices):
        self.asked[name] = ("categorical", tuple(choices))


@pytest.mark.parametrize(("pool", "asked"), [
    ("gap", {}), ("gmp", {}),
    ("lse", {"model.pool_r": ("float", 0.1, 100.0, True)}),
    ("wildcat", {"model.pool_maps": ("int", 1, 8), "model.pool_k_max": ("float", 0.01, 0.99, False),
                 "model.pool_k_min": ("float", 0.0, 0.99, False), "model.pool_alpha": ("float", 0.0, 1.0, False)}),
])
def test_the_pooling_in_use_gets_its_own_knobs_searched(pool: str, asked: dict) -> None:
    trial = _Trial()
    pooling_space(OmegaConf.create({"model": {"pool": pool}, "data": {"crop_size": 56}}), trial)
    assert trial.asked == asked
    trial = _Trial()  # HaS's space draws them as well
    has_patch_side(OmegaConf.create({"model": {"pool": pool}, "data": {"crop_size": 56}}), trial)
    assert trial.asked == {**asked, "method.grid_size": ("categorical", (1, 2, 4, 7, 8, 14, 28))}


def test_data_ranges_and_objectives(method_conf: Path) -> None:
    expected = {"synthetic": ("int(interval(2, 13))", "val/MaxBoxAccV2", None),
                "imagenet": ("int(interval(2, 9))", "val/MaxBoxAccV2", "10"),
                "openimages": ("int(interval(2, 9))", "val/PxAP", "5")}
    for data, (steps, metric, per_class) in expected.items():
        params = _compose(method_conf, ["hparams_search=wsol", f"data={data}"]).hydra.sweeper.params
        assert params["model.scheduler.step_size"] == steps
        assert params["optimized_metric"] == metric == params["callbacks.model_checkpoint.monitor"]
        assert params.get("data.val_per_class") == per_class


def test_tpe_variant_and_sampler_seed(method_conf: Path) -> None:
    cfg = _compose(method_conf, ["hparams_search=wsol_tpe", "seed=7"])
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert cfg.hydra.sweeper.n_trials == 15 and cfg.hydra.sweeper.sampler.n_startup_trials == 5
    assert cfg.hydra.sweeper.sampler.seed == 7
    assert "model.optim.lr" in cfg.hydra.sweeper.params


def test_has_patch_side_divisors_of_the_crop_up_to_half() -> None:
    seen = {}
    trial = SimpleNamespace(suggest_categorical=lambda name, choices: seen.setdefault(name, choices))
    has_patch_side(OmegaConf.create({"data": {"crop_size": 224}, "model": {"pool": "gap"}}), trial)
    assert seen["method.grid_size"] == [1, 2, 4, 7, 8, 14, 16, 28, 32, 56, 112]
    seen.clear()
    has_patch_side(OmegaConf.create({"data": {"crop_size": 56}, "model": {"pool": "gap"}}), trial)
    assert seen["method.grid_size"] == [1, 2, 4, 7, 8, 14, 28]


def test_search_and_slurm_launcher_compose(method_conf: Path) -> None:
    cfg = _compose(method_conf, ["hparams_search=wsol", "hydra/launcher=slurm",
                                 "hydra.sweeper.n_jobs=8"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.sweeper.n_jobs == 8  # 8 trials at once, one SLURM job each


# -- records, best trial, ledger -----------------------------------------------------------------


def test_best_trial_skips_failed_and_nan_and_breaks_ties_by_job() -> None:
    trials = [{"job": 0, "status": "complete", "value": 50.0},
              {"job": 1, "status": "diverged", "value": None},
              {"job": 2, "status": "complete", "value": math.nan},
              {"job": 3, "status": "complete", "value": 61.0},
              {"job": 4, "status": "complete", "value": 61.0},
              {"job": 5, "status": "unfinished"}]
    assert best_trial(trials)["job"] == 3
    assert best_trial(trials, "minimize")["job"] == 0
    assert best_trial(trials[1:3]) is None


def test_ledger_counts_test_evaluations_per_config(tmp_path: Path) -> None:
    base = {"seed": 1, "model": {"optim": {"lr": 0.1}}, "test": False,
            "paths": {"output_dir": "/a"}, "callbacks": {"model_checkpoint": {"dirpath": "${paths.output_dir}/c"}}}
    moved = {**base, "test": True, "paths": {"output_dir": "/elsewhere"}, "tags": ["x"]}
    other = {**base, "model": {"optim": {"lr": 0.2}}}
    assert config_hash(base) == config_hash(moved) != config_hash(other)
    first = record_test_evaluation(base, tmp_path / "logs", tmp_path / "run1")
    second = record_test_evaluation(moved, tmp_path / "logs", tmp_path / "run2")
    third = record_test_evaluation(other, tmp_path / "logs", tmp_path / "run3")
    assert (first["test_evaluations"], second["test_evaluations"], third["test_evaluations"]) == (1, 2, 1)
    assert second["earlier_runs"] == [str((tmp_path / "run1").resolve())]
    assert json.loads((tmp_path / "run2" / "test_record.json").read_text())["test_evaluations"] == 2
    assert len((tmp_path / "logs" / "test_ledger.jsonl").read_text().splitlines()) == 3


def test_divergence_guard_stops_on_a_non_finite_loss() -> None:
    guard = DivergenceGuard()
    decisions = []
    strategy = SimpleNamespace(reduce_boolean_decision=lambda flag, all: decisions.append(flag) or flag)
    trainer = SimpleNamespace(strategy=strategy, current_epoch=2, global_step=17)
    module = SimpleNamespace(hparams=SimpleNamespace(optim={"lr": 3.0, "weight_decay": 0.5}))
    guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.5)}, None, 0)
    with pytest.raises(TrainingDiverged, match=r"not finite at epoch 2, step 17 \(model.optim.lr=3.0"):
        guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(float("nan"))}, None, 1)
    assert decisions == [False, True]
    net = torch.nn.Linear(2, 2)
    module.parameters = net.parameters
    guard.on_validation_start(trainer, module)  # finite weights: nothing
    with torch.no_grad():
        net.weight[0, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match="the weights are not finite at epoch 2"):
        guard.on_validation_start(trainer, module)


# -- end to end ----------------------------------------------------------------------------------


def _no_test_in_trials(sweep: Path) -> None:
    for job in _jobs(sweep):
        metrics = json.loads((job / "metrics.json").read_text()) if (job / "metrics.json").is_file() else {}
        assert not [k for k in metrics if k.startswith("test/")], job
        assert not (job / "test_record.json").exists()
        assert not (job / "cam_pictures").exists()  # drawn on the test split only


@pytest.mark.slow
def test_random_search_best_preset_single_test_run_and_report(tmp_path: Path, data_dir: Path,
                                                              method_conf: Path) -> None:
    done = _cli(tmp_path, "-m", "--config-dir", str(method_conf), "--config-name", CONFIG_NAME,
                "hparams_search=wsol", "method=cam", "hydra.sweeper.n_trials=4",
                *QUICK, f"paths.data_dir={data_dir}")
    assert done.returncode == 0, done.stderr[-4000:]
    sweep = _sweep(tmp_path)
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    trials = [json.loads((j / "trial.json").read_text()) for j in jobs]
    values = [t["value"] for t in trials if t["status"] == "complete"]
    assert values and all(t["objective"] == "val/MaxBoxAccV2" for t in trials)
    lrs = {next(o for o in t["overrides"] if o.startswith("model.optim.lr=")) for t in trials}
    assert len(lrs) == 4  # four different draws
    for t in trials:
        step = int(next(o for o in t["overrides"] if o.startswith("model.scheduler.step_size=")).split("=")[1])
        assert 2 <= step <= 13
        assert "test=False" in t["overrides"] and "model.scheduler.gamma=0.1" in t["overrides"]
    _no_test_in_trials(sweep)
    best_job = max((j for j, t in zip(jobs, trials, strict=True) if t["status"] == "complete"),
                   key=lambda j: json.loads((j / "trial.json").read_text())["value"])
    best_value = json.loads((best_job / "trial.json").read_text())["value"]
    preset = sweep / "best_trial" / "experiment" / "best_trial.yaml"
    assert preset.is_file() and "--config-dir" in done.stdout and str(preset.parent.parent) in done.stdout
    assert f"(job {best_job.name})" in preset.read_text()
    rows = (sweep / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("job,status,objective,value")

    # the printed command, with the stand-in primary config (method listed in its defaults)
    final = ["--config-dir", str(method_conf), "--config-name", CONFIG_NAME,
             f"hydra.searchpath=[file://{sweep / 'best_trial'}]", "experiment=best_trial"]
    done = _cli(tmp_path, *final)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    metrics = json.loads((run / "metrics.json").read_text())
    # the same config and seed on CPU (deterministic): the trial's val number, now with test
    assert metrics["val/MaxBoxAccV2"] == pytest.approx(best_value, abs=1e-6)
    assert "test/MaxBoxAccV2" in metrics
    trial_cfg = OmegaConf.load(best_job / ".hydra" / "config.yaml")
    run_cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert run_cfg.test is True and run_cfg.model == trial_cfg.model and run_cfg.data == trial_cfg.data
    assert config_hash(run_cfg) == config_hash(trial_cfg)
    record = json.loads((run / "test_record.json").read_text())
    assert record["test_evaluations"] == 1 and record["config_hash"] == config_hash(trial_cfg)

    # the same command again: on CPU the same weights (deterministic), so the same checkpoint
    # tested with the same settings, a reproduction check the ledger does not count again
    done = _cli(tmp_path, *final)
    assert done.returncode == 0, done.stderr[-4000:]
    second = max((tmp_path / "outputs" / "train" / "runs").iterdir())
    again = json.loads((second / "test_record.json").read_text())
    assert (again["test_evaluations"], again["evaluations"], again["repeats"]) == (1, 2, [str(run)])
    assert "this test evaluation repeats" in done.stdout
    from camexp.report.build import make_report

    # a published row that describes what the runs trained (the synthetic data's tiny CAM)
    published = tmp_path / "published.yaml"
    OmegaConf.save(OmegaConf.create({
        "sources": {"here": "this test"},
        "metrics": {"test/MaxBoxAccV2": {"unit": "%", "convention": "as logged"}},
        "rows": [{"source": "here", "table": "Search", "row": "best", "dataset": "Synthetic",
                  "backbone": "tiny", "method": "CAM", "pooling": "gap",
                  "metrics": {"test/MaxBoxAccV2": 50.0}}]}), published)
    lines = make_report(tmp_path / "outputs" / "train" / "runs", published=published)
    marks = {Path(line["run"]).name: line["test_evaluations"] for line in lines}
    assert marks == {run.name: 1, second.name: 1}


@pytest.mark.slow
def test_a_search_over_wildcat_draws_its_knobs_for_each_trial(tmp_path: Path, data_dir: Path,
                                                              method_conf: Path) -> None:
    done = _cli(tmp_path, "-m", "--config-dir", str(method_conf), "--config-name", CONFIG_NAME,
                "hparams_search=wsol", "method=cam", "model.pool=wildcat", "hydra.sweeper.n_trials=2",
                *QUICK, f"paths.data_dir={data_dir}")
    assert done.returncode == 0, done.stderr[-4000:]
    for job in _jobs(_sweep(tmp_path)):
        overrides = json.loads((job / "trial.json").read_text())["overrides"]
        drawn = dict(o.split("=", 1) for o in overrides if o.startswith("model.pool_"))
        assert set(drawn) == {"model.pool_maps", "model.pool_k_max", "model.pool_k_min", "model.pool_alpha"}
        trained = OmegaConf.load(job / ".hydra" / "config.yaml").model
        assert trained.pool == "wildcat" and trained.pool_maps == int(drawn["model.pool_maps"])
        assert trained.pool_k_max == pytest.approx(float(drawn["model.pool_k_max"]))


@pytest.mark.slow
def test_a_search_in_which_every_trial_diverges_ends_in_one_paragraph(tmp_path: Path, data_dir: Path,
                                                                       method_conf: Path) -> None:
    done = _cli(tmp_path, "-m", "--config-dir", str(method_conf), "--config-name", CONFIG_NAME,
                "hparams_search=wsol", "method=cam", "hydra.sweeper.n_trials=2",
                "model.optim.lr=choice(1e9,1e10)", *QUICK, "trainer.limit_val_batches=1",
                f"paths.data_dir={data_dir}")
    assert done.returncode == 1, done.stderr[-3000:]
    sweep = _sweep(tmp_path)
    assert f"camexp: no trial of {sweep} completed (2 failed or diverged; see" in done.stdout
    assert "Traceback" not in done.stderr and "No trials are completed yet" not in done.stderr
    rows = (sweep / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",diverged," in row for row in rows[1:])
    assert not (sweep / "best_trial").exists()


@pytest.mark.slow
def test_tpe_search_with_a_diverging_trial(tmp_path: Path, data_dir: Path, method_conf: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # the learning rate drawn from {1e9, 0.05}: a 1e9 trial diverges (NaN loss) and is recorded
    # as failed; the search goes on and its best trial is a finite one
    done = _cli(tmp_path, "-m", "--config-dir", str(method_conf), "--config-name", CONFIG_NAME,
                "hparams_search=wsol_tpe", "method=has", "hydra.sweeper.n_trials=3",
                # 2 random start-up trials (seed 3 draws 0.05, then 1e9), then one TPE trial
                "hydra.sweeper.sampler.n_startup_trials=2", "hydra.sweeper.sampler.seed=3",
                "model.optim.lr=choice(1e9,0.05)",
                f"hydra.sweeper.storage={storage}", *QUICK, f"paths.data_dir={data_dir}")
    assert done.returncode == 0, done.stderr[-4000:]
    sweep = _sweep(tmp_path)
    trials = [json.loads((j / "trial.json").read_text()) for j in _jobs(sweep)]
    assert len(trials) == 3
    statuses = [t["status"] for t in trials]
    assert "diverged" in statuses and "complete" in statuses, statuses
    for t in trials:
        lr = next(o for o in t["overrides"] if o.startswith("model.optim.lr="))
        assert (t["status"] == "diverged") == (lr == "model.optim.lr=1000000000.0")
        grid = int(next(o for o in t["overrides"] if o.startswith("method.grid_size=")).split("=")[1])
        assert grid in (1, 2, 4, 7, 8, 14, 28)  # divisors of the crop (56) up to half of it
    diverged = next(t for t in trials if t["status"] == "diverged")
    assert "not finite" in diverged["error"] and "the training diverged" in diverged["error"]
    study = optuna.load_study(study_name="wsol", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL" if s == "diverged" else "COMPLETE" for s in statuses]
    _no_test_in_trials(sweep)
    assert (sweep / "best_trial" / "experiment" / "best_trial.yaml").is_file()


def _process(seconds: float, status: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time, sys; time.sleep({seconds}); sys.exit({status})"])


def test_a_failed_ddp_trial_kills_its_processes_but_not_the_sweep() -> None:
    from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    from camexp.search.processes import TrialProcesses

    # Lightning's own observer of DDP children; "main" stands in for the sweep's process
    def trial(spared: bool) -> tuple[subprocess.Popen, subprocess.Popen, subprocess.Popen]:
        main, failing, waiting = _process(60), _process(0.2, status=1), _process(60)
        observer = _ChildProcessObserver(main.pid, [failing, waiting], sleep_period=0.5)
        if spared:
            with TrialProcesses(timeout_s=5, poll_s=0.05):
                observer.start()
                waiting.wait(timeout=10)  # killed by the observer once the failing rank exits
        else:
            observer.start()
            waiting.wait(timeout=10)
        observer.join(timeout=5)
        return main, failing, waiting

    main, failing, waiting = trial(spared=False)
    assert (failing.returncode, waiting.returncode) == (1, -9)
    assert main.wait(timeout=5) == -9  # without it, Lightning kills the sweep
    main, failing, waiting = trial(spared=True)
    assert (failing.returncode, waiting.returncode) == (1, -9)
    assert main.poll() is None  # the sweep lives on to the next trial
    main.kill()
    main.wait()


def test_a_trials_processes_that_do_not_exit_are_killed_at_its_end() -> None:
    from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    from camexp.search.processes import TrialProcesses

    main, done, stuck = _process(60), _process(0), _process(60)
    observer = _ChildProcessObserver(main.pid, [done, stuck], sleep_period=0.5)
    with TrialProcesses(timeout_s=1.0, poll_s=0.05) as processes:
        observer.start()
        done.wait(timeout=10)
    assert processes.killed == 1 and stuck.returncode == -9 and done.returncode == 0
    observer.join(timeout=5)
    assert not observer.is_alive() and main.poll() is None
    main.kill()
    main.wait()


@pytest.mark.slow
def test_ddp_trials_use_the_same_values_on_both_ranks(tmp_path: Path, data_dir: Path,
                                                       method_conf: Path) -> None:
    done = _cli(tmp_path, "-m", "--config-dir", str(method_conf), "--config-name", CONFIG_NAME,
                "hparams_search=wsol", "method=adl", "hydra.sweeper.n_trials=2",
                # the sampler's seed 7 draws 1e9 (the trial diverges on both ranks) then 0.05
                "model.optim.lr=choice(1e9,0.05)", "hydra.sweeper.sampler.seed=7",
                "trainer.devices=2", "+trainer.strategy=ddp",
                "+callbacks.record._target_=tests.helpers.search.RecordHparams",
                "+callbacks.record.output_dir=${paths.output_dir}", "+callbacks.record.method=${method}",
                *QUICK, f"paths.data_dir={data_dir}")
    assert done.returncode == 0, done.stderr[-4000:]
    sweep = _sweep(tmp_path)
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]  # rank 1 started no search of its own
    seen = []
    for job in jobs:
        ranks = [json.loads((job / f"hparams_rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["world_size"] == 2
        assert ranks[0]["optim"] == ranks[1]["optim"] and ranks[0]["scheduler"] == ranks[1]["scheduler"]
        assert ranks[0]["method"] == ranks[1]["method"]
        trial = json.loads((job / "trial.json").read_text())
        sampled = dict(o.split("=", 1) for o in trial["overrides"])
        assert float(sampled["model.optim.lr"]) == ranks[0]["optim"]["lr"]
        assert int(sampled["model.scheduler.step_size"]) == ranks[1]["scheduler"]["step_size"]
        assert float(sampled["method.drop_rate"]) == ranks[1]["method"]["drop_rate"]
        seen.append((ranks[0]["optim"]["lr"], trial["status"]))
    # each trial its own draw, shared by its two processes; the diverged trial is recorded as
    # failed and its processes end without taking the search with them
    assert seen == [(1e9, "diverged"), (0.05, "complete")], seen
    assert "Forcefully terminating" not in done.stderr
    _no_test_in_trials(sweep)

"""Sweeps: paper-fraction sweeps of eval (no retraining), Hydra launchers (local processes, SLURM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from camexp.runs.job import prepare_data
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "callbacks.cam_pictures.num_images=1", "trainer.enable_progress_bar=false",
         "localization.cam_curve_interval=0.01"]
# the metrics that localization.paper_fraction changes
PAPER_METRICS = {"test/loc_top1_err", "test/loc_top5_err", "test/loc_gt_known"}


def _cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _jobs(sweep_root: Path) -> list[Path]:
    """The job folders of the one sweep under ``sweep_root`` (``<time>/<job number>``)."""
    sweeps = list(sweep_root.iterdir())
    assert len(sweeps) == 1, sweeps
    return sorted((p for p in sweeps[0].iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


@pytest.mark.slow
def test_paper_fraction_sweep_evaluates_one_checkpoint_without_retraining(tmp_path: Path, data_dir: Path) -> None:
    cfg = compose_config("train", [*TINY_SYNTHETIC, *QUICK, "trainer.max_epochs=2"], tmp_path / "train", data_dir)
    train(cfg)
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns
    result = _cli("camexp.eval", "-m", f"ckpt_path={ckpt}", "localization.paper_fraction=0.1,0.2,0.3", "tags=[thresholds]",
                  *TINY_SYNTHETIC, "callbacks.cam_pictures.num_images=0", "trainer.enable_progress_bar=false",
                  "localization.cam_curve_interval=0.01", f"paths.data_dir={data_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(tmp_path / "outputs" / "eval" / "multiruns")
    assert [job.name for job in jobs] == ["0", "1", "2"]
    metrics = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    for job, fraction in zip(jobs, (0.1, 0.2, 0.3), strict=True):
        assert OmegaConf.load(job / ".hydra" / "config.yaml").localization.paper_fraction == fraction
        assert not (job / "checkpoints").exists()  # tested, not trained
    assert set(metrics[0]) >= PAPER_METRICS
    for other in metrics[1:]:
        assert set(other) == set(metrics[0])
        differing = {key for key in other if other[key] != pytest.approx(metrics[0][key])}
        assert differing <= PAPER_METRICS, differing
    assert ckpt.stat().st_mtime_ns == before


def test_slurm_launcher_config_makes_the_expected_sbatch_script(tmp_path: Path, monkeypatch) -> None:
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cfg = compose_config("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                   "hydra.launcher.gpus_per_node=4"], tmp_path / "run", tmp_path)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params["_target_"].endswith("SlurmLauncher")
    assert params["tasks_per_node"] == 4 and params["signal_delay_s"] == 90
    # what hydra-submitit-launcher does with these parameters, without a SLURM cluster
    monkeypatch.setattr(submitit.slurm.slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    executor = submitit.AutoExecutor(cluster="slurm", folder=str(tmp_path / "submitit"),
                                     slurm_max_num_timeout=params["max_num_timeout"])
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    skip = {"_target_", "submitit_folder", "max_num_timeout"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in skip})
    script = executor._executor._make_submission_file_text("python -m camexp.train", "uid")
    for line in ("#SBATCH --signal=USR1@90", "#SBATCH --requeue", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --ntasks-per-node=4", "#SBATCH --partition=gpu", "#SBATCH --time=1440",
                 "#SBATCH --mem=480GB", "#SBATCH --cpus-per-task=10"):
        assert line in script, line


def test_local_processes_launcher_config(tmp_path: Path) -> None:
    cfg = compose_config("train", ["hydra/launcher=local_processes"], tmp_path / "run", tmp_path)
    assert cfg.hydra.launcher._target_.endswith("LocalLauncher")
    assert cfg.hydra.launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"
    assert cfg.hydra.launcher.gpus_per_node == 0 and cfg.hydra.launcher.tasks_per_node == 1


@pytest.mark.slow
def test_two_jobs_through_the_local_submitit_launcher(tmp_path: Path, data_dir: Path) -> None:
    cfg = compose_config("train", TINY_SYNTHETIC, tmp_path / "unused", data_dir)
    prepare_data(cfg)  # generate the dataset once, not in both jobs at the same time
    result = _cli("camexp.train", "-m", "hydra/launcher=local_processes", "model.pool=gap,gmp", "tags=[pools]",
                  *TINY_SYNTHETIC, *QUICK, f"paths.data_dir={data_dir}", cwd=tmp_path, timeout=240)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    jobs = _jobs(tmp_path / "outputs" / "train" / "multiruns")
    assert [job.name for job in jobs] == ["0", "1"]
    for job, pool in zip(jobs, ("gap", "gmp"), strict=True):
        assert yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["model"]["pool"] == pool
        metrics = json.loads((job / "metrics.json").read_text())
        assert {"test/acc_top1", "test/MaxBoxAccV2"} <= set(metrics)
        assert (job / "checkpoints" / "last.ckpt").is_file()
    assert list((jobs[0].parent / ".submitit").iterdir())  # submitit's logs, beside the jobs

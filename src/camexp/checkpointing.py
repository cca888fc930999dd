"""Checkpoints that survive crashes and preemption, and finding the one to resume from.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the same folder
  and renames it into place: a kill during a save never leaves a truncated ``last.ckpt``.
- :class:`PreemptionCheckpoint` turns SLURM's warning signals (SIGTERM, SIGUSR1) into a
  resumable ``checkpoints/preempted.ckpt`` (model, optimizer, scheduler, loops, RNG states,
  position in the epoch) and the run exits with :data:`PREEMPTED_EXIT_CODE`.
- :func:`find_resume_checkpoint` picks the newest readable checkpoint of a run folder,
  skipping (with a message) files that are truncated or unreadable.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from camexp.errors import UserError
from camexp.messages import say

# EX_TEMPFAIL: "try again later", what a requeued job should do
PREEMPTED_EXIT_CODE = 75


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<dir>/.<name>.tmp-*`` then ``os.replace`` onto the final name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def readable_checkpoint(path: Path) -> str | None:
    """None if ``path`` loads safely as a checkpoint dict, else why it does not."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if not isinstance(state, dict) or "state_dict" not in state:
        return "it holds no 'state_dict'"
    return None


def find_resume_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest readable ``*.ckpt`` of ``checkpoint_dir`` (None if there is none).

    Newest by modification time, so a preemption checkpoint written after ``last.ckpt`` wins.
    Unreadable files (a truncated copy, a foreign pickle) are reported and skipped.
    """
    folder = Path(checkpoint_dir)
    candidates = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for candidate in candidates:
        problem = readable_checkpoint(candidate)
        if problem is None:
            return candidate
        say(
            f"camexp: skipping checkpoint {candidate}: cannot be read ({problem}); trying an "
            "older one. Delete the file if it is truncated."
        )
    return None


def resolve_resume(resume: str | None, ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` if given, the newest readable one of this
    run folder with ``resume=auto``, else None (a fresh run)."""
    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        problem = "it does not exist" if not path.is_file() else readable_checkpoint(path)
        if problem:
            raise UserError(
                f"ckpt_path={path} cannot be resumed from: {problem}. Pass a complete .ckpt "
                "written by camexp.train, or resume=auto to take the newest readable one of the run."
            )
        return str(path)
    if resume in (None, "", "never"):
        return None
    if resume != "auto":
        raise UserError(f"resume={resume!r} is not allowed; use auto or null.")
    found = find_resume_checkpoint(checkpoint_dir)
    if found is None:
        say(f"camexp: resume=auto found no readable checkpoint in {checkpoint_dir}; starting afresh.")
        return None
    say(f"camexp: resuming from {found}")
    return str(found)


def requeue_slurm_job() -> str | None:
    """Under SLURM, put this job back in the queue (``scontrol requeue``); returns what was done.

    SLURM requeues a preempted job itself when it was submitted with ``--requeue``, but not a
    job that reaches its time limit: its warning signal (``--signal=USR1@90``) lands here.
    """
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not requeue SLURM job {job}: {error}"
    if done.returncode:
        return f"could not requeue SLURM job {job}: {done.stderr.strip() or done.returncode}"
    return f"requeued SLURM job {job}"


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM or SIGUSR1, save ``<dirpath>/preempted.ckpt`` and stop training.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary (on every
    DDP rank at once); SIGUSR1, SLURM's usual warning signal, is routed to the same handler.
    The checkpoint carries the global RNG states too, restored on resume.
    """

    def __init__(self, dirpath: str, filename: str = "preempted.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.preempted = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning installs its SIGTERM handler after on_fit_start; route SIGUSR1 to it here.
        self.preempted = False
        sigterm = signal.getsignal(signal.SIGTERM)
        if callable(sigterm) and hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, sigterm)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
            self.preempted = True

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            set_rng_states(state_dict["rng"])


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states, as tensors and plain values."""
    numpy_state = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

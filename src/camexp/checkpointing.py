"""Checkpoints that survive crashes and preemption, and finding the one to resume from.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the same folder
  and renames it into place: a kill during a save never leaves a truncated ``last.ckpt``.
- :class:`PreemptionCheckpoint` turns SLURM's warning signals (SIGTERM, SIGUSR1) into a
  resumable ``checkpoints/preempted.ckpt`` (model, optimizer, scheduler, loops, RNG states,
  position in the epoch) and the run exits with :data:`PREEMPTED_EXIT_CODE`.
- :func:`find_resume_checkpoint` picks the readable checkpoint of a run folder that is furthest
  in training (by its stored step), skipping (with a message) files that are truncated or
  unreadable; :func:`check_resume_compatible` refuses one of another network.
- :func:`exit_preempted` ends a run stopped by a signal in any stage: requeue, status 75.
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


def _load(path: Path) -> dict:
    """The checkpoint dict, tensors memory-mapped (nothing is read until used)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy format


def _problem(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def readable_checkpoint(path: Path) -> str | None:
    """None if ``path`` loads safely as a checkpoint dict, else why it does not."""
    progress = checkpoint_progress(path)
    return progress if isinstance(progress, str) else None


# on equal progress (the end-of-epoch checkpoints of one epoch), prefer these names
NAME_RANK = {"preempted.ckpt": 2, "last.ckpt": 1}


def checkpoint_progress(path: Path) -> tuple[int, int] | str:
    """``(global_step, epoch)`` stored in the checkpoint, or why it cannot be read."""
    try:
        state = _load(path)
    except Exception as error:
        return _problem(error)
    if not isinstance(state, dict) or "state_dict" not in state:
        return "it holds no 'state_dict'"
    return int(state.get("global_step", -1)), int(state.get("epoch", -1))


def find_resume_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The readable ``*.ckpt`` of ``checkpoint_dir`` furthest in training (None if none).

    Furthest by the global step (then the epoch) stored in each file, not by file time: a copy
    of the run folder (``cp -r``, rsync without ``-t``) gives every file a new time. At equal
    progress ``preempted.ckpt`` wins over ``last.ckpt`` over ``epoch_NNN.ckpt``. Unreadable
    files (a truncated copy, a foreign pickle) are reported and skipped.
    """
    folder = Path(checkpoint_dir)
    best: tuple[tuple, Path] | None = None
    for candidate in sorted(folder.glob("*.ckpt")):
        progress = checkpoint_progress(candidate)
        if isinstance(progress, str):
            say(
                f"camexp: skipping checkpoint {candidate}: cannot be read ({progress}). Delete "
                "the file if it is truncated."
            )
            continue
        key = (*progress, NAME_RANK.get(candidate.name, 0), candidate.stat().st_mtime_ns)
        if best is None or key > best[0]:
            best = (key, candidate)
    return None if best is None else best[1]


def checkpoint_hyperparameters(path: str | Path) -> dict[str, Any]:
    """The ``hyper_parameters`` the LightningModule saved in the checkpoint ({} if none)."""
    state = _load(Path(path))
    found = state.get("hyper_parameters") if isinstance(state, dict) else None
    return dict(found) if isinstance(found, dict) else {}


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


# set once when the network is built, not part of what was trained
INIT_ONLY = ("pretrained", "weights_path")


def check_resume_compatible(path: str | Path, model: L.LightningModule) -> None:
    """Refuse to resume ``model`` from a checkpoint of another network, naming what differs.

    The checkpoint's weights must have the configured network's names and shapes. When they do
    not, the message lists the stored hyper-parameters that differ from the configured model
    (``model.<key>``: checkpoint value vs configured value). Other differences (the learning
    rate, say) are printed: resuming restores the checkpoint's optimizer state anyway.
    """
    path = Path(path)
    state = _load(path)
    stored = _flat(checkpoint_hyperparameters(path))
    configured = _flat(dict(getattr(model, "hparams", {}) or {}))
    differ = [key for key in sorted(set(stored) | set(configured))
              if key.split(".")[0] not in INIT_ONLY and stored.get(key, "<unset>")
              != configured.get(key, "<unset>")]
    described = "; ".join(f"model.{key}: {stored.get(key, '<unset>')!r} in the checkpoint, "
                          f"{configured.get(key, '<unset>')!r} configured" for key in differ[:12])
    theirs = {k: tuple(v.shape) for k, v in state.get("state_dict", {}).items()
              if hasattr(v, "shape")}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if theirs != ours:
        missing = sorted(set(ours) - set(theirs))
        unexpected = sorted(set(theirs) - set(ours))
        shapes = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
        weights = "; ".join(part for part in (
            f"{len(shapes)} tensor(s) of other shapes, e.g. {shapes[0]} {theirs[shapes[0]]} vs "
            f"{ours[shapes[0]]}" if shapes else "",
            f"{len(missing)} missing, e.g. {missing[0]}" if missing else "",
            f"{len(unexpected)} unexpected, e.g. {unexpected[0]}" if unexpected else "") if part)
        raise UserError(
            f"{path} was trained with another model config, so it cannot be resumed with this "
            f"one. What differs: {described or 'no stored hyper-parameter'} ({weights}). Resume "
            "with the checkpoint's settings (the same model=... and overrides as the run that "
            "wrote it), or start afresh in another folder (hydra.run.dir=...)."
        )
    if differ:
        say(f"camexp: resuming from {path}, whose stored settings differ: {described}. The "
              "checkpoint's optimizer and scheduler states are restored.")


def resolve_resume(resume: str | None, ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` if given, the newest readable one of this
    run folder with ``resume=auto``, else None (a fresh run)."""
    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        problem = "it does not exist" if not path.is_file() else readable_checkpoint(path)
        if problem:
            raise UserError(
                f"ckpt_path={path} cannot be resumed from: {problem}. Pass a complete .ckpt "
                "written by camexp.train, or resume=auto to take the readable one of the run furthest in training."
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


def exit_preempted(trainer: L.Trainer, what: str) -> None:
    """A signal stopped the run (``what``: what was saved): say how to go on, requeue the SLURM
    job, exit with :data:`PREEMPTED_EXIT_CODE`."""
    if trainer.is_global_zero:
        say(f"camexp: preempted; {what}. Re-run the same command with resume=auto (and "
              "hydra.run.dir=<this run folder>).")
        requeued = requeue_slurm_job()
        if requeued:
            say(f"camexp: {requeued}")
    raise SystemExit(PREEMPTED_EXIT_CODE) from None


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
    """On SIGTERM or SIGUSR1, save ``<dirpath>/preempted.ckpt`` and stop, in every stage.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary of training,
    validation and test (on every DDP rank at once); SIGUSR1, SLURM's usual warning signal, is
    routed to the same handler at the start of every stage (the sanity check included), so it
    never kills the job with its default action. While fitting, a signal during validation
    takes effect when that validation (and its checkpoints) is done, so the resumed run
    misses no validation. The checkpoint is written while fitting only
    (with the global RNG states, restored on resume); a signal during the test after training
    needs none, the finished training's ``last.ckpt`` is resumed from (and tested again).
    """

    def __init__(self, dirpath: str, filename: str = "preempted.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.preempted = False

    @staticmethod
    def _route_sigusr1() -> None:
        # Lightning installs its SIGTERM handler when a stage starts (after setup)
        sigterm = signal.getsignal(signal.SIGTERM)
        if callable(sigterm) and hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, sigterm)

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._route_sigusr1()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.preempted = False
        self._route_sigusr1()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._route_sigusr1()
        if trainer.state.fn == "fit":
            self._hold_signals()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._release_signals()

    def _hold_signals(self) -> None:
        """While fitting, a signal during validation stops the run once the validation (and
        its checkpoints) is done: Lightning would stop it mid-way, and a resume from there
        skips the rest of that validation (its metrics and its epoch's checkpoints)."""
        self._pending: tuple | None = None
        self._held = {}
        for signum in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if signum is not None and callable(signal.getsignal(signum)):
                self._held[signum] = signal.getsignal(signum)
                signal.signal(signum, self._remember)

    def _remember(self, signum, frame) -> None:
        self._pending = (signum, frame)

    def _release_signals(self) -> None:
        held, self._held = getattr(self, "_held", {}), {}
        for signum, handler in held.items():
            signal.signal(signum, handler)
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is not None and signal.SIGTERM in held:
            held[signal.SIGTERM](*pending)  # Lightning's: stop at the next batch or epoch end

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._route_sigusr1()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
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

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
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from camexp.core.errors import OutputFolderError, UserError, load_failure
from camexp.core.messages import say
from camexp.runs.ledger import RECORD_NAME, RECORD_TESTED

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
        except (OSError, RuntimeError) as error:
            Path(temporary).unlink(missing_ok=True)
            if not isinstance(error, OSError) and not _write_failure(error):
                raise
            raise OutputFolderError(_unwritten(path, error)) from error
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _write_failure(error: RuntimeError) -> bool:
    """torch.save's zip writer reports a failed write (a full disk, a quota, a file-size
    limit) as a RuntimeError without an errno."""
    text = str(error)
    return any(mark in text for mark in ("inline_container", "PytorchStreamWriter", "file write failed"))


def _unwritten(path: Path, error: Exception) -> str:
    """One paragraph: the checkpoint that could not be written, why, and what is intact."""
    import shutil

    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free on that disk"
    except OSError:
        free = "free space unknown"
    reason = (os.strerror(error.errno) if isinstance(error, OSError) and error.errno
              else "the write failed: a full disk, a quota or a file-size limit")
    kept = (f"the previous {path.name} is intact" if path.exists()
            else "no earlier checkpoint of that name existed")
    return (f"cannot write checkpoint {path} ({reason}; {free}); {kept}, and no partial file was "
            "left. Free space (or move the run folder to a disk with room), then continue with "
            "the same command and resume=auto.")


def _load(path: Path) -> dict:
    """The checkpoint dict, tensors memory-mapped (nothing is read until used)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # the legacy format, or a file mmap cannot map: the plain load says why
        return torch.load(path, map_location="cpu", weights_only=True)




# what to pass instead, in every message about a ckpt_path= that is not a checkpoint
PASS_A_CHECKPOINT = ("Pass ckpt_path= a checkpoint written by camexp.train "
                     "(<run>/checkpoints/epoch_NNN.ckpt or last.ckpt), or that run's folder "
                     "(ckpt_path=<run>: the checkpoint the run tested).")


def _text_kind(path: Path) -> str | None:
    """What a text file is (``"a JSON file"``, ...), or None when ``path`` is not text."""
    import json

    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if not head or b"\0" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if head.lstrip()[:1] in (b"{", b"["):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            pass
        else:
            return ("a JSON file, a run's metrics.json (its final numbers)"
                    if path.name == "metrics.json" else "a JSON file")
    if path.suffix in (".yaml", ".yml"):
        return "a YAML file (a config or a run's record)"
    return "a text file"


def eval_checkpoint_problem(path: Path) -> str | None:
    """None when ``path`` is a Lightning checkpoint of a camexp network (what ``camexp.eval``
    rebuilds a network from); else one paragraph: what the file is and what to pass instead."""
    import torch

    text = _text_kind(path)
    if text:
        return (f"{path} is {text}, not a checkpoint (a binary file written by torch.save). "
                f"{PASS_A_CHECKPOINT}")
    try:
        state = _load(path)
    except Exception as error:
        return f"Cannot load checkpoint {path}: {load_failure(path, error)}. {PASS_A_CHECKPOINT}"
    if not isinstance(state, dict):
        return (f"{path} holds a {type(state).__name__} saved with torch.save, not a checkpoint "
                f"(a dict with the weights and the network's settings). {PASS_A_CHECKPOINT}")
    if "state_dict" not in state:
        if state and all(isinstance(value, torch.Tensor) for value in state.values()):
            return (f"{path} is a plain state dict ({len(state)} tensors: weights only, as "
                    "torch.save(model.state_dict()) writes), without the network's settings "
                    "camexp.eval rebuilds the network from. Test those weights with the network "
                    "they belong to: a torchvision classifier's with python -m camexp.eval "
                    "model=torchvision model.name=<its name> model.weights_path=<file>; a camexp "
                    "network's with python -m camexp.train model=<its model config> "
                    f"model.weights_path=<file> train=false (tests without training). "
                    f"{PASS_A_CHECKPOINT}")
        keys = ", ".join(sorted(str(k) for k in state)[:8])
        return (f"{path} holds a dict without 'state_dict' (keys: {keys}): not a checkpoint "
                f"written by camexp.train. {PASS_A_CHECKPOINT}")
    if "pytorch-lightning_version" not in state:
        return (f"{path} holds a 'state_dict' but was not written by Lightning's checkpointing "
                "(no 'pytorch-lightning_version', no network settings): a hand-saved dict. "
                f"{PASS_A_CHECKPOINT}")
    settings = state.get("hyper_parameters")
    if not isinstance(settings, dict) or "arch" not in settings:
        return (f"{path} is a Lightning checkpoint of another module (no camexp network settings "
                f"in its hyper_parameters). {PASS_A_CHECKPOINT}")
    return None


def tested_checkpoint(run_dir: Path) -> tuple[Path, str]:
    """The checkpoint a training run folder's test evaluated, and how it was found.

    Its ``test_record.json`` names it (runs since issue 20); else the folder's only
    ``checkpoints/epoch_*.ckpt`` (the best epoch the run kept). Raises :class:`UserError`
    for an eval run's folder or a folder with no (or several) such checkpoints."""
    import json

    record = run_dir / RECORD_NAME
    try:
        tested = json.loads(record.read_text()).get(RECORD_TESTED) if record.is_file() else None
    except (OSError, ValueError, AttributeError):
        tested = None
    if tested and (run_dir / tested).is_file():
        return run_dir / tested, f"the checkpoint {run_dir} tested ({record.name})"
    best = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    if len(best) == 1:
        return best[0], f"the best epoch {run_dir} kept, the one its test evaluated"
    trained = _evaluated_checkpoint(run_dir)
    if trained:
        raise UserError(
            f"ckpt_path={run_dir} is the folder of a camexp.eval run, which trains nothing and "
            f"keeps no checkpoint; it evaluated {trained}. Pass that (or its training run's "
            "folder) as ckpt_path=.")
    found = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    if not found:
        raise UserError(
            f"ckpt_path={run_dir} is a folder without checkpoints ({run_dir / 'checkpoints'} holds "
            f"no .ckpt file). {PASS_A_CHECKPOINT}")
    raise UserError(
        f"ckpt_path={run_dir}: the folder does not say which checkpoint its run tested (no "
        f"'{RECORD_TESTED}' in test_record.json, and {len(best)} epoch_*.ckpt files: "
        f"{', '.join(found)}). Pass one of them: ckpt_path={run_dir / 'checkpoints'}/<file>.")


def _evaluated_checkpoint(run_dir: Path) -> str | None:
    """The ``ckpt_path`` of an eval run folder's Hydra record (None for other folders)."""
    import yaml

    try:
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if isinstance(config, dict) and config.get("task_name") == "eval" and config.get("ckpt_path"):
        return str(config["ckpt_path"])
    return None


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
        return load_failure(path, error)
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


def same_setting(key: str, stored: Any, configured: Any) -> bool:
    """Equal values, or two ``_target_`` names of the same class (a checkpoint written before a
    class moved stores its former name, e.g. ``camexp.methods.ACoL``)."""
    if stored == configured:
        return True
    if not key.endswith("_target_") or not isinstance(stored, str) or not isinstance(configured, str):
        return False
    from hydra.utils import get_object

    try:
        return get_object(stored) is get_object(configured)
    except Exception:  # a name that no longer resolves differs
        return False


def settings_that_differ(path: str | Path, configured: dict[str, Any]) -> str:
    """The model settings stored in the checkpoint that differ from ``configured`` (the
    model's constructor arguments), as ``model.<key>: <stored> in the checkpoint, <value>
    configured``; "" when none."""
    stored = _flat(checkpoint_hyperparameters(path))
    configured = _flat(configured)
    # a setting stored as None that the config leaves out (model.backbone on a CNN) is the same
    differ = [key for key in sorted(set(stored) | set(configured))
              if key.split(".")[0] not in INIT_ONLY
              and not (stored.get(key) is None and key not in configured)
              and not same_setting(key, stored.get(key, "<unset>"), configured.get(key, "<unset>"))]
    return "; ".join(f"model.{key}: {stored.get(key, '<unset>')!r} in the checkpoint, "
                     f"{configured.get(key, '<unset>')!r} configured" for key in differ[:12])


def check_resume_compatible(path: str | Path, model: L.LightningModule) -> None:
    """Refuse to resume ``model`` from a checkpoint of another network, naming what differs.

    The checkpoint's weights must have the configured network's names and shapes. When they do
    not, the message lists the stored hyper-parameters that differ from the configured model
    (``model.<key>``: checkpoint value vs configured value). Other differences (the learning
    rate, say) are printed: resuming restores the checkpoint's optimizer state anyway.
    """
    path = Path(path)
    state = _load(path)
    described = settings_that_differ(path, dict(getattr(model, "hparams", {}) or {}))
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
    if described:
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


# what a shell reports for a process ended by Ctrl-C (128 + SIGINT)
INTERRUPTED_EXIT_CODE = 130


def stopped_by_ctrl_c(stop: SystemExit) -> bool:
    """Whether Lightning's ``sys.exit(1)`` after a KeyboardInterrupt is what ``stop`` is."""
    return isinstance(stop.__context__, KeyboardInterrupt)


def exit_interrupted(what: str, main: bool = True) -> None:
    """Ctrl-C stopped the run (``what``: what is kept): say how to go on, exit 130."""
    if main:
        say(f"camexp: interrupted (Ctrl-C); {what}. Re-run the same command with resume=auto "
            "(and hydra.run.dir=<this run folder>) to continue.")
    raise SystemExit(INTERRUPTED_EXIT_CODE) from None


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




def training_complete(path: str | Path, max_epochs: int | None, max_steps: int | None) -> bool:
    """Whether the checkpoint's training reached ``max_epochs`` epochs (or ``max_steps`` steps),
    as Lightning's fit loop judges it (``max_epochs`` None: 1000 unless ``max_steps`` is set;
    -1: no limit). A checkpoint without loop state counts as unfinished."""
    try:
        state = _load(Path(path))
        processed = int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
        steps = int(state.get("global_step", 0))
    except Exception:
        return False
    if max_steps not in (None, -1) and steps >= int(max_steps):
        return True
    if max_epochs is None:
        max_epochs = 1000 if max_steps in (None, -1) else -1
    return int(max_epochs) != -1 and processed >= int(max_epochs)


def best_checkpoint(path: str | Path) -> str | None:
    """The best checkpoint recorded by the ModelCheckpoint state stored in ``path`` (None if none)."""
    try:
        callbacks = _load(Path(path)).get("callbacks") or {}
    except Exception:
        return None
    for name, state in callbacks.items():
        if str(name).startswith("ModelCheckpoint") and isinstance(state, dict):
            best = state.get("best_model_path")
            if best:
                return str(best)
    return None

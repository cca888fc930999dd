"""One run per run folder, and a record of the last good start that a failed start cannot spoil.

:class:`RunFolder` (``with RunFolder(output_dir) as folder:``) is entered by ``train`` and
``eval`` before they read anything:

- **The lock.** ``<run>/.camexp.lock`` holds the holder's pid, host and start time, and is
  touched every ``HEARTBEAT_S`` seconds while the run lives. A second run in the same folder
  (a SLURM requeue while the old job still runs, the same command started twice) stops at once
  with :class:`RunFolderLocked`, naming the holder. A lock is stale, and taken over with a
  message, when its process is dead on this host, or, for a holder on another host (whose
  processes cannot be seen from here), when its heartbeat is older than ``stale_after_s``
  (``STALE_AFTER_S``, 10 minutes), or when it was taken by this same SLURM job before a requeue
  (SLURM never runs two instances of one job). Only the main process takes it: the extra DDP processes
  Lightning starts re-run the same command in the same folder (``LOCAL_RANK``/``NODE_RANK``
  set), and must not be refused by their own job's lock.
- **The record.** Hydra writes ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``
  before camexp's code runs, so a start that then fails (refused by the lock, another model
  config on resume, a dataset error) would leave the folder describing a run that never
  happened. A copy of those files is kept in ``.hydra/last_start/`` when a start succeeds
  (:meth:`RunFolder.started`, just before training or testing), and put back when a start
  fails before that point.
- **A failed start.** A folder where no start ever succeeded, and whose start failed (a config
  or dataset error, a checkpoint that cannot be read), gets ``start_failed.txt`` with the
  reason, so ``camexp.report`` shows it as failed to start, not as an unfinished run; the next
  successful start removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

from omegaconf import DictConfig, OmegaConf, open_dict

from camexp.core.errors import RunFolderLocked, user_error_in, user_message
from camexp.core.messages import say

LOCK_NAME = ".camexp.lock"
RECORD_DIR = ".hydra"
RECORD_COPY = "last_start"
TREE_FILE = "config_tree.txt"  # camexp.runs.start writes it at every start
START_FAILED = "start_failed.txt"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


def hydra_record(cfg: DictConfig) -> dict[str, str] | None:
    """The files Hydra writes in this job's ``.hydra/`` (``config.yaml``, ``hydra.yaml``,
    ``overrides.yaml``), as this job composed them; None outside a Hydra job or when Hydra
    keeps no record there (``hydra.output_subdir``). ``cfg`` is the job's config as composed."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.get("output_subdir") != RECORD_DIR:
        return None
    task = cfg.copy()
    with open_dict(task):
        task.pop("hydra", None)
    return {"config.yaml": OmegaConf.to_yaml(task),
            "hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})),
            "overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task)}


def is_main_process(env: dict[str, str] | None = None) -> bool:
    """False in the extra processes of a DDP job (rank > 0 on this node, or another node)."""
    env = os.environ if env is None else env
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        value = env.get(key, "0").strip() or "0"
        if value != "0":
            return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def read_lock(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return holder if isinstance(holder, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half-written or damaged: judged by its age alone


def slurm_job() -> str | None:
    """This SLURM job (``<array job>_<task>`` for an array task); kept across requeues."""
    job = os.environ.get("SLURM_JOB_ID")
    if job and os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return job or None


def stale_reason(holder: dict, age_s: float, stale_after_s: float, host: str) -> str | None:
    """Why the lock of ``holder`` may be taken over, or None when its holder may be alive."""
    pid, other_host = holder.get("pid"), holder.get("host")
    job = slurm_job()
    if job and holder.get("slurm_job") == job and pid != os.getpid():
        # SLURM runs one instance of a job at a time: the holder is this job before its requeue
        return f"it was taken by SLURM job {job} before it was requeued"
    if other_host == host and isinstance(pid, int):
        if pid == os.getpid():
            return None
        return None if pid_alive(pid) else f"process {pid} on {host} is no longer running"
    if age_s > stale_after_s:
        return (f"its heartbeat is {age_s:.0f} s old (more than {stale_after_s:.0f} s; the holder "
                "refreshes it every 30 s)")
    return None


class RunFolder:
    """The lock and the Hydra record of one run folder (see the module docstring)."""

    def __init__(self, output_dir: str | Path, stale_after_s: float = STALE_AFTER_S,
                 heartbeat_s: float = HEARTBEAT_S, main_process: bool | None = None,
                 record: dict[str, str] | None = None) -> None:
        """``record``: this run's own Hydra record (:func:`hydra_record`), written at
        :meth:`started` over whatever another start left in ``.hydra/`` meanwhile."""
        self.dir = Path(output_dir)
        self.record = record
        self.lock = self.dir / LOCK_NAME
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.main = is_main_process() if main_process is None else main_process
        self.host = socket.gethostname()
        self._held = False
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the lock -------------------------------------------------------------------------

    def acquire(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        mine = {"pid": os.getpid(), "host": self.host, "started": time.time(),
                "slurm_job": slurm_job()}
        for _ in range(3):
            try:
                handle = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(self.lock)
                if holder is None:
                    continue  # released in between
                try:
                    age = time.time() - self.lock.stat().st_mtime
                except FileNotFoundError:
                    continue
                why = stale_reason(holder, age, self.stale_after_s, self.host)
                if why is None:
                    raise RunFolderLocked(
                        f"{self.dir} is in use by process {holder.get('pid', '?')} on host "
                        f"{holder.get('host', '?')} (lock {self.lock}, heartbeat {age:.0f} s ago). "
                        "Two runs in one folder would mix their checkpoints. Wait for it to end "
                        "(or stop it), or run in another folder (hydra.run.dir=...). If that "
                        f"process is gone for good, delete {self.lock}."
                    ) from None
                say(f"camexp: taking over the stale lock {self.lock} of process "
                      f"{holder.get('pid', '?')} on {holder.get('host', '?')}: {why}.")
                self.lock.unlink(missing_ok=True)
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(mine, file)
            self._held = True
            self._thread = threading.Thread(target=self._beat, name="camexp-lock", daemon=True)
            self._thread.start()
            return
        raise RunFolderLocked(f"could not take the lock {self.lock}; another run keeps taking it.")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.lock)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._held:
            holder = read_lock(self.lock) or {}
            if holder.get("pid") == os.getpid() and holder.get("host") == self.host:
                self.lock.unlink(missing_ok=True)
            self._held = False

    # -- the record -----------------------------------------------------------------------

    def _record_files(self) -> list[Path]:
        """Hydra's record and camexp's config tree (``config_tree.txt``, written at start)."""
        folder = self.dir / RECORD_DIR
        files = sorted(p for p in folder.glob("*.yaml") if p.is_file()) if folder.is_dir() else []
        tree = self.dir / TREE_FILE
        return files + ([tree] if tree.is_file() else [])

    def started(self) -> None:
        """The start succeeded: this run's Hydra record is now the folder's record.

        Two starts in one folder at the same moment both have Hydra write ``.hydra/`` before
        either tries the lock, so the files on disk may be the other start's: the run that holds
        the lock writes its own (``record``) again here."""
        self._started = True
        if not self.main:
            return
        (self.dir / START_FAILED).unlink(missing_ok=True)
        if self.record and (self.dir / RECORD_DIR).is_dir():
            for name, text in self.record.items():
                (self.dir / RECORD_DIR / name).write_text(text)
        copy = self.dir / RECORD_DIR / RECORD_COPY
        files = self._record_files()
        if not files:
            return
        copy.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, copy / path.name)

    def unchanged(self) -> None:
        """This start changes nothing in the folder (a finished run left alone): put back the
        record Hydra overwrote."""
        self.restore_record()

    def restore_record(self) -> None:
        """Put back the record of the last successful start (if any)."""
        copy = self.dir / RECORD_DIR / RECORD_COPY
        if not self.main or not copy.is_dir():
            return
        for saved in copy.glob("*.yaml"):
            shutil.copy2(saved, self.dir / RECORD_DIR / saved.name)
        if (copy / TREE_FILE).is_file():
            shutil.copy2(copy / TREE_FILE, self.dir / TREE_FILE)

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> RunFolder:
        if self.main:
            try:
                self.acquire()
            except RunFolderLocked:
                self.restore_record()
                raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if kind is not None and not self._started:
                self.restore_record()
                self._note_failed_start(error)
        finally:
            self.release()

    def _note_failed_start(self, error: BaseException | None) -> None:
        """``start_failed.txt`` with the reason, in a folder where no start ever succeeded."""
        if not self.main or (self.dir / RECORD_DIR / RECORD_COPY).is_dir() or not self.dir.is_dir():
            return
        found = user_error_in(error) if isinstance(error, Exception) else None
        if found is not None:
            reason = f"{type(found).__name__}: {user_message(found)}"
        elif isinstance(error, (KeyboardInterrupt, SystemExit)):
            reason = "interrupted before it started"
        else:
            reason = f"{type(error).__name__}: {' '.join(str(error).split())}"
        with contextlib.suppress(OSError):  # a folder that cannot be written: the error says so
            (self.dir / START_FAILED).write_text(reason + "\n", encoding="utf-8")

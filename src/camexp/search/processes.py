"""The DDP processes of a search trial: a failed trial must end its own processes, not the sweep."""

from __future__ import annotations

import subprocess
import threading

# Lightning's thread (lightning.fabric.strategies.launchers.subprocess_script) that SIGKILLs the
# main process and every DDP process as soon as one of them exits with a non-zero status
OBSERVER_THREAD = "child-process-observer"

def _observers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == OBSERVER_THREAD]

def spare_the_sweep(observer: threading.Thread) -> None:
    """Make Lightning's observer of a trial's DDP processes kill only those processes, not the
    sweep's (which is the trial's rank 0 and runs the next trials): rank 0 then fails in its
    next collective, and the trial is recorded as failed."""
    children = list(getattr(observer, "_child_processes", []))

    def kill_the_children() -> None:
        for process in children:
            if process.poll() is None:
                process.kill()

    observer._terminate_all = kill_the_children
    observer._camexp_spared = True

class TrialProcesses:
    """``with TrialProcesses(): train(cfg)`` around a search trial, in the sweep's process.

    Lightning starts the other DDP ranks of a trial as child processes, with a thread that
    SIGKILLs them all, and the main process, when one exits with a non-zero status. A failed
    or diverged trial makes its ranks exit non-zero, so that thread would kill the search (and
    leave the next trial's rank 1 waiting forever). Here a watcher tells each such thread to
    spare the sweep (:func:`spare_the_sweep`) as soon as it starts, and at the end of the trial
    the thread is stopped and the children get ``timeout_s`` to exit (they stop on their own: a
    divergence is decided on every rank at once) before they are killed (``killed`` counts
    them). Outside DDP there is no such thread and this does nothing.
    """

    def __init__(self, timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.killed = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            for observer in _observers():
                if not getattr(observer, "_camexp_spared", False):
                    spare_the_sweep(observer)

    def __enter__(self) -> TrialProcesses:
        self._watcher = threading.Thread(target=self._watch, name="camexp-trial-processes",
                                         daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        for observer in _observers():
            spare_the_sweep(observer)
            observer._run = lambda: True  # its next check ends it
            for process in getattr(observer, "_child_processes", []):
                try:
                    process.wait(timeout=self.timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    self.killed += 1

"""User-facing errors: what went wrong, where (file, line, key), and how to fix it.

Entry points catch :class:`UserError` and print its message as one paragraph (a list in it
one item a line), without a traceback, and exit with status 2; anything else is a bug and
keeps its traceback. A UserError raised inside a constructor that Hydra's ``instantiate``
calls (a WeightsError of the model, a DatasetError of the DataModule) arrives wrapped in Hydra's
``InstantiationException``, and one raised in a DataLoader worker arrives with the worker's
traceback in its message: both are unwrapped to the original paragraph.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input from the user: a config value, a dataset on disk, a weights file."""


def user_error_in(error: BaseException) -> UserError | None:
    """The UserError that ``error`` is or wraps (Hydra's InstantiationException chains the
    constructor's exception as ``__cause__``), else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        # an error raised `from None` hides its context on purpose (e.g. a diverged search trial)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None


def user_message(error: UserError) -> str:
    """The error's paragraph, without a DataLoader worker's traceback; runs of spaces are
    collapsed, but the message's own line breaks (a list, one problem a line) and the indent
    of its lines are kept.

    torch re-raises a worker's exception as ``type(error)("Caught X in DataLoader worker
    process N.\\nOriginal Traceback ...\\n<module>.X: <message>")``; the message is the last part.
    """
    text = str(error)
    if "Original Traceback" in text:
        marker = f"{type(error).__name__}: "
        position = text.rfind(marker)
        if position >= 0:
            text = text[position + len(marker):]
    lines = (line[:len(line) - len(line.lstrip())] + " ".join(line.split())
             for line in text.strip().splitlines())
    return "\n".join(line for line in lines if line.strip())


def print_user_error(error: UserError) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]camexp: {type(error).__name__}[/]: {escape(user_message(error))}",
        highlight=False,
    )


def exit_on_user_error(function: Callable[[], T]) -> T:
    """Run ``function``; on a :class:`UserError` (or one wrapped by Hydra's instantiate),
    print it as one paragraph and exit 2."""
    try:
        return function()
    except Exception as error:
        exit_if_user_error(error)
        raise


def exit_if_user_error(error: BaseException) -> None:
    """Print the UserError that ``error`` is or wraps as one paragraph and exit 2; return
    otherwise (the caller re-raises)."""
    found = user_error_in(error)
    if found is not None:
        print_user_error(found)
        sys.exit(2)


def load_failure(path: str | os.PathLike, error: BaseException) -> str:
    """Why ``torch.load`` could not read ``path``, in words (torch says ``'101'`` for a text
    file, ``EOFError`` with no message for an empty one)."""
    text = " ".join(str(error).split())
    try:
        size = os.path.getsize(path)
    except OSError as missing:
        return f"it cannot be read ({os.strerror(missing.errno or 0) or missing})"
    if size == 0:
        return "the file is empty (0 bytes)"
    # torch's zip reader answers a truncated archive with EINVAL
    damaged = isinstance(error, OSError) and error.errno == errno.EINVAL
    if isinstance(error, OSError) and error.errno and not damaged:
        return f"it cannot be read ({os.strerror(error.errno)})"
    if "Weights only load failed" in text and "Unsupported operand" in text:
        # torch's unpickler met bytes no torch.save writes (a text file, garbage)
        return f"it is not a file written by torch.save ({size} bytes of something else)"
    if "Weights only load failed" in text:
        return ("it holds objects other than tensors and plain values, which could run code "
                "when loaded, so it is refused")
    if damaged or "central directory" in text or "zip archive" in text or isinstance(error, EOFError):
        return (f"it is truncated or damaged ({size} bytes; its zip archive cannot be read), "
                "e.g. a copy or download that stopped early")
    if isinstance(error, (KeyError, IndexError, ValueError)) or "magic number" in text \
            or "pickle" in text.lower() or "load key" in text:
        return f"it is not a file written by torch.save ({size} bytes of something else)"
    return text or type(error).__name__


# -- the user errors of each room (raised where the fault is found) ---------------------------


class CompileError(UserError, RuntimeError):
    """torch.compile could not compile the network with this method."""


class ConfigError(UserError, ValueError):
    """A config value is not allowed; the message names the key, the value and the choices."""


class MethodError(UserError, ValueError):
    """A method's setting or placement is not allowed; the message says which and the fix."""


class WeightsError(UserError, RuntimeError):
    """Weights could not be found, read or matched to the network."""


class PxAPError(UserError, ValueError):
    """PxAP cannot be computed (no positive pixel, no prediction) or inputs mismatch."""


class MapError(UserError, ValueError):
    """A score map is unusable (wrong shape, NaN/inf, values outside [0, 1])."""


class BoxError(UserError, ValueError):
    """Ground-truth boxes are malformed (wrong shape, inverted, outside the image)."""


class DatasetError(UserError, ValueError):
    """A dataset on disk is missing or malformed; the message names the file and the fix."""


class MetadataError(UserError, ValueError):
    """The metadata folder or one of its files is missing or malformed."""


class TargetLayerError(UserError, ValueError):
    """No usable target layer; the message names ``localization.target_layer=`` and candidates."""


class MissingTagsError(UserError):
    """A sweep was started without ``tags``."""


class RunFolderLocked(UserError):
    """Another live process runs in this run folder."""


class EvalMapsError(UserError, ValueError):
    """Unusable input for the evaluation (missing file, bad option)."""


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the hyper-parameters (often the learning rate)
    do not train this network."""


class OutputFolderError(UserError):
    """The run folder (``hydra.run.dir``) or a file in it cannot be written."""


UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR)


def output_folder_problem(error: OSError) -> str | None:
    """What keeps a run folder (or a file in it) from being written, or None when ``error`` is
    another fault: no permission, a full disk, a file where a folder should be, a path that
    cannot be created (``hydra.run.dir`` at an existing file, under ``/proc``, ...)."""
    where = error.filename or "the run folder"
    if error.errno in UNWRITABLE:
        return f"cannot write {where} ({os.strerror(error.errno)})"
    if error.errno in (errno.EEXIST, errno.ENOENT) and _creating_a_folder(error):
        if error.errno == errno.EEXIST:
            return f"cannot create the folder {where}: a file of that name is in the way"
        return f"cannot create the folder {where} ({os.strerror(error.errno)})"
    return None


def _creating_a_folder(error: OSError) -> bool:
    """Whether ``error`` was raised creating a folder (``mkdir``/``makedirs``)."""
    traceback, last = error.__traceback__, None
    while traceback is not None:
        last, traceback = traceback.tb_frame.f_code.co_name, traceback.tb_next
    return last in ("mkdir", "makedirs")


def run_cli(main: Callable[[], None], hint: Callable[[str], str | None] | None = None) -> None:
    """Run a ``@hydra.main`` entry point so that an output folder that cannot be written is
    one paragraph (exit 2), not Hydra's traceback.

    Hydra creates the run folder and writes ``.hydra/`` before the task runs, and reports a
    failure there with a traceback; with ``HYDRA_FULL_ERROR=1`` it re-raises instead, and here
    Hydra's own mistakes (an unknown override, a missing config) are still printed as Hydra
    prints them, in one line and exit 1.
    """
    from hydra.errors import CompactHydraException

    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except CompactHydraException as error:
        if full_error == "1":
            raise
        sys.stderr.write(f"{error}\n")
        if error.__cause__ is not None:
            sys.stderr.write(f"{error.__cause__}\n")
        extra = hint(f"{error}\n{error.__cause__ or ''}") if hint is not None else None
        if extra:
            sys.stderr.write(f"{extra}\n")
        sys.exit(1)
    except OSError as error:
        problem = output_folder_problem(error)
        if problem is None:
            raise
        print_user_error(OutputFolderError(
            f"{problem}. Point the run at a folder you can write: hydra.run.dir=/path/to/run (or "
            "paths.log_dir=/path/to/outputs, or hydra.sweep.dir= for a multirun), or free space "
            "on that disk."))
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C before or after the trainer's stages
        sys.stderr.write("camexp: interrupted (Ctrl-C). A run stopped while training continues "
                         "with the same command and resume=auto (and hydra.run.dir=<its run "
                         "folder>).\n")
        sys.exit(130)
    except Exception as error:
        exit_if_user_error(error)
        raise
    finally:
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error

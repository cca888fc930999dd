"""Loggers built for camexp's run folders: a W&B logger that never needs the network.

``conf/logger/wandb.yaml`` instantiates :func:`wandb_logger`, which

- picks the W&B mode: ``WANDB_MODE`` when set; otherwise ``online`` only when an API key is
  found (``WANDB_API_KEY``, or a ``~/.netrc`` entry for the W&B host) and the host answers
  within a few seconds; ``offline`` in every other case, so a run without network or key
  neither hangs nor fails (upload later with ``wandb sync <run>/wandb/offline-run-*``);
- writes W&B's files under the run folder (``<run>/wandb/``);
- groups the jobs of a Hydra sweep together (group ``<job name>-<sweep folder name>``), names
  each run after its experiment preset and job number, tags it with the preset's ``tags``;
- logs the composed config (model, data, localization, trainer, seed) and the published
  numbers the run is compared with (``published``: the rows of ``conf/published.yaml`` that
  ``camexp.report`` matches to this config);
- keeps one W&B run per run folder: the id is stored in ``<run>/wandb/camexp-run-id`` and a
  resumed run continues it (``resume="allow"``).

:func:`resumable_csv_logger` is Lightning's CSV logger appending to the run's ``metrics.csv``
(Lightning's deletes it when it starts, so a resume lost the earlier epochs' curves).
"""

from __future__ import annotations

import netrc
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, ListConfig, OmegaConf

from camexp.core.messages import say

DEFAULT_BASE_URL = "https://api.wandb.ai"
MODES = ("online", "offline", "disabled", "dryrun", "shared", "run")


def wandb_host(env: Mapping[str, str] | None = None) -> str:
    """The host name of the W&B server (``WANDB_BASE_URL``, else api.wandb.ai)."""
    env = os.environ if env is None else env
    return urlparse(env.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or "api.wandb.ai"


def has_api_key(env: Mapping[str, str] | None = None) -> bool:
    """True when ``WANDB_API_KEY`` is set or the netrc file (``NETRC`` or ``~/.netrc``) has an
    entry for the W&B host, as ``wandb login`` writes it."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY", "").strip():
        return True
    path = Path(env.get("NETRC") or Path(env.get("HOME") or Path.home()) / ".netrc")
    try:
        return netrc.netrc(str(path)).authenticators(wandb_host(env)) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def host_reachable(host: str, port: int = 443, timeout_s: float = 3.0) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout_s`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wandb_mode(requested: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The W&B mode of this run: ``requested`` (the config's ``mode``) or ``WANDB_MODE`` when
    given; else ``online`` with an API key and a reachable server; else ``offline``."""
    env = os.environ if env is None else env
    explicit = requested or env.get("WANDB_MODE")
    if explicit:
        if explicit not in MODES:
            from camexp.core.errors import UserError

            raise UserError(
                f"W&B mode {explicit!r} (logger.wandb.mode or WANDB_MODE) is not allowed; use one "
                f"of {list(MODES)}, or leave both unset to go online only with an API key."
            )
        return explicit
    if has_api_key(env) and host_reachable(wandb_host(env)):
        return "online"
    return "offline"


def _hydra_context() -> dict[str, Any]:
    """What the running Hydra job says about itself (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    context: dict[str, Any] = {
        "experiment": hydra_cfg.runtime.choices.get("experiment"),
        "job_name": hydra_cfg.job.name,
        "multirun": hydra_cfg.mode == RunMode.MULTIRUN,
    }
    if context["multirun"]:
        context["sweep_dir"] = str(hydra_cfg.sweep.dir)
        context["job_num"] = hydra_cfg.job.get("num")
    return context


def sweep_group(context: Mapping[str, Any]) -> str | None:
    """``<job name>-<sweep folder name>`` for a job of a multirun, else None."""
    if not context.get("multirun"):
        return None
    return f"{context['job_name']}-{Path(context['sweep_dir']).name}"


def run_name(context: Mapping[str, Any], default: str | None) -> str | None:
    """The experiment preset's name (else ``default``), with ``#<job number>`` in a sweep."""
    name = context.get("experiment") or default
    if context.get("multirun") and context.get("job_num") is not None:
        name = f"{name or context['job_name']}#{context['job_num']}"
    return name


def _plain(value: Any) -> Any:
    """A config node (or anything else) as plain Python containers, interpolations resolved."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


RUN_ID_FILE = "camexp-run-id"


def run_id(save_dir: str | Path) -> str:
    """The W&B run id of this run folder (``<save_dir>/wandb/camexp-run-id``), made on first use."""
    import secrets

    path = Path(save_dir) / "wandb" / RUN_ID_FILE
    try:
        found = path.read_text(encoding="utf-8").strip()
    except OSError:
        found = ""
    if found:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    new = secrets.token_hex(4)
    path.write_text(new + "\n", encoding="utf-8")
    return new


def wandb_logger(
    save_dir: str,
    project: str = "camexp",
    name: str | None = None,
    group: str | None = None,
    tags: Any = None,
    config: Any = None,
    mode: str | None = None,
    log_model: bool = False,
    **kwargs: Any,
):
    """A Lightning ``WandbLogger`` writing under ``save_dir`` (``<save_dir>/wandb/``).

    Args:
        save_dir: the run folder.
        project: the W&B project.
        name: the run's name; None: the experiment preset (``#<job>`` added in a sweep).
        group: the run's group; None: the sweep (``<job name>-<sweep folder>``) in a multirun.
        tags: tags of the run (the preset's ``tags``).
        config: the composed config to log (nodes resolved here), with its published rows.
        mode: online | offline | disabled; None decides as :func:`wandb_mode` says.
        log_model: upload checkpoints as W&B artifacts (online only).
        kwargs: passed on to ``wandb.init``.
    """
    from lightning.pytorch.loggers import WandbLogger

    context = _hydra_context()
    if not os.environ.get("WANDB_MODE", "x").strip():
        del os.environ["WANDB_MODE"]  # wandb refuses an empty WANDB_MODE; empty means unset here
    chosen = wandb_mode(mode)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    tag_list = [str(tag) for tag in (_plain(tags) or [])]
    if context.get("experiment") and context["experiment"] not in tag_list:
        tag_list.append(str(context["experiment"]))
    if "id" not in kwargs and chosen != "disabled":
        # one W&B run per run folder: a resumed run (or a requeued job) continues it; offline,
        # each start writes its own offline-run-* folder under that id, and `wandb sync` of
        # them all uploads them to that one run, in order
        kwargs["id"] = run_id(save_dir)
        if chosen == "online":
            kwargs.setdefault("resume", "allow")
    if chosen == "offline":
        say(f"camexp: W&B runs offline; upload later with "
              f"`wandb sync {Path(save_dir) / 'wandb'}/offline-run-*`.")
    return WandbLogger(
        save_dir=str(save_dir),
        project=project,
        name=name or run_name(context, None),
        group=group or sweep_group(context),
        tags=tag_list or None,
        config=_with_published(_plain(config), save_dir),
        mode=chosen,
        log_model=log_model if chosen == "online" else False,
        **{key: _plain(value) for key, value in kwargs.items()},
    )


def _with_published(config: Any, save_dir: str) -> Any:
    """``config`` plus ``published``: the published rows the report compares this run with."""
    if not isinstance(config, dict) or "published" in config:
        return config
    from camexp.report.published import load_published, rows_of_run

    rows = rows_of_run(config, Path(save_dir), load_published())
    return {**config, "published": [{"source": row.source, "table": row.table, "row": row.row,
                                     "metrics": row.metrics} for row in rows]}


# -- logs that survive a resume ------------------------------------------------------------------


def _csv_writer_class():
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class AppendingExperimentWriter(ExperimentWriter):
        """Lightning's CSV writer deletes ``metrics.csv`` when it starts; this one keeps it and
        its header, and appends (a resumed run adds its rows to those of the earlier epochs)."""

        def _check_log_dir_exists(self) -> None:
            import csv

            if os.path.isfile(self.metrics_file_path):
                with open(self.metrics_file_path, newline="", encoding="utf-8") as file:
                    header = next(csv.reader(file), [])
                self.metrics_keys = sorted(set(header))

    return AppendingExperimentWriter


def resumable_csv_logger(save_dir: str, name: str = "csv", version: str | int | None = "", **kwargs):
    """Lightning's ``CSVLogger`` that appends to an existing ``<save_dir>/<name>/metrics.csv``
    instead of deleting it (``conf/logger/csv.yaml``)."""
    from lightning.pytorch.loggers import CSVLogger

    class ResumableCSVLogger(CSVLogger):
        @property
        def experiment(self):
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = _csv_writer_class()(log_dir=self.log_dir)
            return self._experiment

    return ResumableCSVLogger(save_dir=save_dir, name=name, version=version, **kwargs)


def trim_csv_log(path: str | Path, checkpoint: str | Path) -> int:
    """Before resuming from ``checkpoint``, drop the rows of ``metrics.csv`` logged after it
    (they are logged again): rows of a later epoch, or of its epoch at a later step. Returns
    the number of rows dropped."""
    import csv

    import torch

    path = Path(path)
    if not path.is_file():
        return 0
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    epoch, step = int(state.get("epoch", -1)), int(state.get("global_step", -1))
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        fields, rows = reader.fieldnames or [], list(reader)

    def later(row: dict) -> bool:
        try:
            row_epoch, row_step = int(float(row.get("epoch") or -1)), int(float(row.get("step") or -1))
        except ValueError:
            return False
        return row_epoch > epoch or (row_epoch == epoch and row_step > step)

    kept = [row for row in rows if not later(row)]
    if len(kept) != len(rows):
        temporary = path.with_name(f".{path.name}.tmp")
        with temporary.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(temporary, path)
    return len(rows) - len(kept)

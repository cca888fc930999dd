"""The data and localization settings a run used, kept with its checkpoints, reused by eval.

A network trained at 112 px and evaluated at ``data=cub``'s default 224 px gives wrong numbers
without a word. Training therefore stores its resolved ``data`` and ``localization`` settings
(and the Hydra choices that name them) in every checkpoint (``checkpoint["camexp"]``) and in
``<run>/run_settings.yaml``. ``camexp.eval`` starts from those settings, lets the overrides the
user typed win, prints where they came from and every value that differs from the training
run's. Checkpoints written before this existed fall back on their run folder's
``.hydra/config.yaml``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from typing_extensions import override

from camexp.core.errors import UserError
from camexp.core.messages import say
from camexp.runs.info import SETTINGS_FILE, training_method

CHECKPOINT_KEY = "camexp"
GROUPS = ("data", "localization")
# how the loader works, not what the data is: taken from the training run like the rest
# (unless overridden) but never reported as a difference
MACHINE_KEYS = frozenset({"batch_size", "eval_batch_size", "num_workers", "pin_memory",
                          "persistent_workers", "check_sample", "on_bad_image"})
# not reported either: they only matter to training (schedule length, data order)
UNREPORTED = MACHINE_KEYS | {"epochs", "seed"}


def _choices() -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return dict(HydraConfig.get().runtime.choices or {})


def task_overrides() -> list[str]:
    """The overrides typed on the command line of this job (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings of a composed config (plain values, checkpoint-safe)."""
    container = {group: OmegaConf.to_container(cfg[group], resolve=True)
                 for group in GROUPS if cfg.get(group) is not None}
    choices = _choices()
    model = cfg.get("model")
    plain = OmegaConf.to_container(cfg, resolve=False)
    container["choices"] = {k: str(v) for k, v in choices.items()
                            if k in ("data", "model", "method", "localization", "experiment") and v}
    container["method"] = training_method(plain, choices)
    if model is not None:
        container["model"] = {"arch": model.get("arch"), "pool": model.get("pool")}
    return container


def write_settings(settings: dict[str, Any], folder: str | Path) -> Path:
    """``<folder>/run_settings.yaml``: what the report and a later eval read."""
    path = Path(folder) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


# -- eval: read them back ---------------------------------------------------------------------


def stored_settings(ckpt_path: Path, eval_cfg: DictConfig) -> tuple[dict[str, Any] | None, str]:
    """The training settings of a checkpoint and where they came from: the checkpoint itself,
    else its run folder's run_settings.yaml, else its ``.hydra/config.yaml``; (None, "") if none."""
    try:
        try:
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip archive: no memory map
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: load_from_checkpoint reports it with the fix
        checkpoint = None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get(CHECKPOINT_KEY), dict):
        return checkpoint[CHECKPOINT_KEY], f"the checkpoint {ckpt_path}"
    run_dir = ckpt_path.parent.parent
    settings_file = run_dir / SETTINGS_FILE
    if settings_file.is_file():
        return _read_yaml(settings_file, ckpt_path) or None, str(settings_file)
    config_file = run_dir / ".hydra" / "config.yaml"
    if config_file.is_file():
        trained = _read_yaml(config_file, ckpt_path, OmegaConf.load)
        if trained is None:
            return None, ""
        # resolve against this eval's paths (the training run's cwd is not known)
        with open_dict(trained):
            trained.paths = eval_cfg.paths
        try:
            settings = {g: OmegaConf.to_container(trained[g], resolve=True)
                        for g in GROUPS if trained.get(g) is not None}
        except Exception:  # an interpolation this process cannot resolve
            return None, ""
        hydra_file = run_dir / ".hydra" / "hydra.yaml"
        if hydra_file.is_file():
            choices = ((_read_yaml(hydra_file, ckpt_path) or {}).get("hydra") or {}) \
                .get("runtime", {}).get("choices") or {}
            settings["choices"] = {k: str(v) for k, v in choices.items() if v}
        return settings, str(config_file)
    return None, ""


def _read_yaml(path: Path, ckpt_path: Path, load=None) -> Any:
    """A YAML file of the training run's folder (read by ``load``, default ``yaml.safe_load``
    of its text); one paragraph when it cannot be read."""
    try:
        loaded = load(path) if load else yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception as error:  # unreadable file, undecodable bytes, YAML syntax
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(
            f"{path} cannot be read ({reason}); camexp.eval takes the data and localization "
            f"settings {ckpt_path.name} was trained with from it. Restore the file from a copy "
            "of the run folder, or move it away and pass the training run's data and "
            "localization settings as overrides. Nothing was tested.") from None
    if loaded is not None and not isinstance(loaded, (dict, DictConfig)):
        raise UserError(f"{path} holds no mapping of settings; restore it from a copy of the run "
                        "folder, or move it away. Nothing was tested.")
    return loaded


def _overridden(overrides: list[str], group: str) -> tuple[set[str], str | None]:
    """The paths under ``group`` set on the command line (``data.synthetic.seed=0`` ->
    ``synthetic.seed``) and the group option chosen (``data=cub`` -> ``cub``)."""
    paths: set[str] = set()
    option = None
    for given in overrides:
        key, _, value = given.lstrip("+~").partition("=")
        if key == group:
            option = value
        elif key.startswith(f"{group}."):
            paths.add(key[len(group) + 1:])
    return paths, option


def _with_overrides(trained: dict[str, Any], current: dict[str, Any], paths: set[str]) -> dict[str, Any]:
    """``trained`` with the value of ``current`` at each of ``paths`` (removed where
    ``current`` has none, e.g. ``~data.key``)."""
    merged = OmegaConf.create(trained)
    given = OmegaConf.create(current)
    missing = object()
    for path in sorted(paths):
        value = OmegaConf.select(given, path, default=missing)
        if value is missing:
            parent, _, leaf = path.rpartition(".")
            node = OmegaConf.select(merged, parent) if parent else merged
            if isinstance(node, DictConfig) and leaf in node:
                with open_dict(node):
                    node.pop(leaf)
        else:
            OmegaConf.update(merged, path, value, merge=False, force_add=True)
    return OmegaConf.to_container(merged, resolve=True)


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def apply_training_settings(cfg: DictConfig, ckpt_path: Path,
                            overrides: list[str] | None = None) -> list[str]:
    """Make ``cfg``'s data and localization groups those of the training run of ``ckpt_path``,
    except the keys set in ``overrides`` (default: this job's command line) and the loader's
    machine settings. Prints what it used and what differs; returns the printed lines."""
    overrides = task_overrides() if overrides is None else overrides
    stored, source = stored_settings(ckpt_path, cfg)
    lines: list[str] = []
    if not stored:
        lines.append(f"camexp: no training settings found for {ckpt_path} (neither in the checkpoint "
                     "nor in its run folder): evaluating with the data and localization configured here.")
        _say(lines)
        return lines
    trained_choices = stored.get("choices") or {}
    lines.append(f"camexp: evaluating with the training run's data and localization settings, "
                 f"from {source}.")
    taken: list[str] = []
    differs: list[str] = []
    for group in GROUPS:
        trained = stored.get(group)
        if not isinstance(trained, dict) or cfg.get(group) is None:
            continue
        keys, option = _overridden(overrides, group)
        current = OmegaConf.to_container(cfg[group], resolve=True)
        trained_option = trained_choices.get(group)
        if group == "data" and option is not None and trained_option and option != trained_option:
            lines.append(f"camexp: data={option} differs from the training run's data={trained_option}: "
                         "evaluating on the data configured here, not the training run's.")
            merged = current
        else:
            merged = _with_overrides(trained, current, keys)
        for key in sorted(set(merged) | set(trained)):
            if key in UNREPORTED and group == "data":
                continue
            was, now = trained.get(key), merged.get(key)
            if was != now:
                differs.append(f"{group}.{key}={_show(now)} (training run: {_show(was)})")
            elif key in current and current.get(key) != now and key != "_target_":
                taken.append(f"{group}.{key}={_show(now)}")
        with open_dict(cfg):
            cfg[group] = OmegaConf.create(merged)
    if taken:
        lines.append("camexp: from the training run (not this config's defaults): " + ", ".join(taken) + ".")
    data_differs = [d for d in differs if d.startswith("data.")]
    other_differs = [d for d in differs if not d.startswith("data.")]
    if data_differs:
        lines.append("camexp: WARNING: evaluating on data settings that differ from the training run's: "
                     + ", ".join(data_differs) + ". The numbers are not those of the network as trained "
                     "and validated; drop the override(s) to evaluate as trained.")
    if other_differs:
        lines.append("camexp: scoring the maps with settings that differ from the training run's: "
                     + ", ".join(other_differs) + ".")
    if not differs and len(lines) == 1:
        lines.append("camexp: no difference from the training run's settings.")
    _say(lines)
    settings = dict(stored)
    settings.update({g: OmegaConf.to_container(cfg[g], resolve=True) for g in GROUPS if cfg.get(g) is not None})
    data_option = _overridden(overrides, "data")[1]
    settings["choices"] = {**trained_choices, **({"data": data_option} if data_option else {})}
    settings["trained_from"] = str(ckpt_path)
    if rank_zero_only.rank == 0:
        write_settings(settings, cfg.paths.output_dir)
    return lines


def _say(lines: list[str]) -> None:
    if rank_zero_only.rank != 0:  # DDP: the other processes rebuild the same config silently
        return
    for line in lines:
        say(line, logging.WARNING if "WARNING" in line else logging.INFO)


class RunSettings(L.Callback):
    """Stores the run's resolved data/localization settings in every checkpoint it writes and
    in ``<run>/run_settings.yaml``."""

    def __init__(self, settings: dict[str, Any], output_dir: str | Path) -> None:
        self.settings = settings
        self.output_dir = Path(output_dir)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunSettings:
        return cls(settings_of(cfg), cfg.paths.output_dir)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero and stage == "fit":
            write_settings(self.settings, self.output_dir)

    @override
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.settings

"""What a run folder says about itself, readable without torch or Lightning (the report's needs).

``run_settings.yaml`` holds a run's resolved data and localization settings and its Hydra
choices (written by :mod:`camexp.runs.settings`); :func:`training_method` names the training
method of a run's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SETTINGS_FILE = "run_settings.yaml"


def training_method(config: dict[str, Any], choices: dict[str, Any]) -> str:
    """The training method's name: the Hydra choice ``method``, else the class of
    ``method._target_``, else ``method.name``, else ``cam`` (plain CAM training)."""
    if choices.get("method"):
        return str(choices["method"])
    method = config.get("method")
    if isinstance(method, dict):
        if method.get("_target_"):
            return str(method["_target_"]).rsplit(".", 1)[-1]
        if method.get("name"):
            return str(method["name"])
    if isinstance(method, str) and method:
        return method
    return "cam"


def training_run_folder(ckpt_path: str | Path) -> Path:
    """The training run folder of an eval's ``ckpt_path``: the folder itself
    (``ckpt_path=<run>``), or that of a checkpoint file (``<run>/checkpoints/<file>.ckpt``)."""
    path = Path(str(ckpt_path)).expanduser()
    if path.is_dir() or (not path.exists() and not path.suffix and path.name != "checkpoints"):
        return path
    return path.parent.parent

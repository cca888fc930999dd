"""Test-only pieces for the search tests: a stand-in ``method`` group and a callback that records
what each DDP process trains with.

The training methods' configs (``conf/method/<name>.yaml``) come from another branch; until they
are merged the tests write stand-ins, with the keys those configs have, into a temporary config
folder next to a copy of ``conf/train.yaml`` that lists ``method`` under ``hparams_search``.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from tests.helpers.configs import CONF_DIR

STAND_IN_METHODS = {
    "cam": "name: cam\n",
    "has": "name: has\ngrid_size: 4\ndrop_rate: 0.5\n",
    "acol": "name: acol\nthreshold: 0.7\n",
    "adl": "name: adl\ndrop_rate: 0.75\nthreshold: 0.9\n",
    "cutmix": "name: cutmix\nbeta: 1.0\nprob: 1.0\n",
    "spg": ("name: spg\nthreshold_1h: 0.7\nthreshold_1l: 0.01\nthreshold_2h: 0.5\n"
            "threshold_2l: 0.05\nthreshold_3h: 0.7\nthreshold_3l: 0.1\n"),
}
CONFIG_NAME = "train_with_method"


def write_method_conf(folder: Path) -> Path:
    """``folder/method/<name>.yaml`` stand-ins and ``folder/train_with_method.yaml``: conf/train.yaml
    with ``- method: cam`` right under ``- model: ...`` (below hparams_search, as it must be)."""
    lines = (CONF_DIR / "train.yaml").read_text().splitlines()
    if (CONF_DIR / "method").is_dir():  # the real method group: used as it is
        (folder / f"{CONFIG_NAME}.yaml").write_text("\n".join(lines) + "\n")
        return folder
    (folder / "method").mkdir(parents=True, exist_ok=True)
    for name, text in STAND_IN_METHODS.items():
        (folder / "method" / f"{name}.yaml").write_text(text)
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("- model:"))
    lines.insert(at + 1, "  - method: cam")
    (folder / f"{CONFIG_NAME}.yaml").write_text("\n".join(lines) + "\n")
    return folder


class RecordHparams(L.Callback):
    """Writes ``hparams_rank<r>.json`` (the optimizer and scheduler settings the model was built
    with, and the method node) in ``output_dir`` from every process at the start of training."""

    def __init__(self, output_dir: str, method=None) -> None:
        self.output_dir = Path(output_dir)
        self.method = method

    def on_train_start(self, trainer, pl_module) -> None:
        hparams = pl_module.hparams
        record = {"optim": dict(hparams.optim), "scheduler": dict(hparams.scheduler),
                  "method": None if self.method is None else _settings(self.method),
                  "rank": trainer.global_rank, "world_size": trainer.world_size,
                  "rank_zero_only": rank_zero_only.rank}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / f"hparams_rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _settings(method) -> dict:
    """A method's hyper-parameters: the config node, or the method object the model was given
    (``${method}`` is instantiated with the callback)."""
    if isinstance(method, dict) or hasattr(method, "keys"):
        return dict(method)
    return {k: v for k, v in vars(method).items() if isinstance(v, (bool, int, float, str))}

"""``hparams_search=`` on the transformer methods: each adds its own hyper-parameters to the
common space (SCM's diffusion layers, SAT's area target), and a trial's values compose and
pass camexp's checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from camexp.config.validate import validate
from tests.helpers.configs import compose_config

SPACES = {"tscam": {}, "scm": {"method.num_layers": "int(interval(1, 6))"},
          "sat": {"method.area_threshold": "interval(0.0, 1.0)"}}


@pytest.mark.parametrize("method", sorted(SPACES))
def test_the_transformer_methods_search_their_own_hyper_parameters(method: str, tmp_path: Path) -> None:
    overrides = ["hparams_search=wsol", "experiment=transformer_cub_deit_small", f"method={method}",
                 "model.pretrained=false"]
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path / "data")
    params = cfg.hydra.sweeper.params
    assert {k: v for k, v in params.items() if k.startswith("method.")} == SPACES[method]
    assert params["model.optim.lr"] == "tag(log, interval(1e-5, 1.0))"
    assert params["model.scheduler.step_size"] == "int(interval(5, 45))"  # CUB's range
    for key in SPACES[method]:
        assert OmegaConf.select(cfg, key) is not None  # the method has the key the space names
    # one trial's values, as the sweeper passes them
    trial = {"scm": ["method.num_layers=6"], "sat": ["method.area_threshold=0.6"], "tscam": []}[method]
    values = ["model.optim.lr=0.0003", "model.optim.weight_decay=0.01", "model.scheduler.name=step",
              "model.scheduler.step_size=12", "test=false", *trial]
    validate(compose_config("train", [*overrides[1:], *values], tmp_path / "trial", tmp_path / "data"))

"""Search spaces that Optuna's ranges cannot state (``custom_search_space`` of the sweeper)."""

from __future__ import annotations

from omegaconf import DictConfig


def has_patch_side(cfg: DictConfig, trial) -> None:
    """HaS's patch side (``method.grid_size``, pixels) over the divisors of the crop size up to
    half of it (docs/search.md), for ``custom_search_space`` of the Optuna sweeper."""
    crop = int(cfg.data.crop_size)
    sides = [d for d in range(1, crop // 2 + 1) if crop % d == 0]
    trial.suggest_categorical("method.grid_size", sides)


# -- the end of a sweep ---------------------------------------------------------------------

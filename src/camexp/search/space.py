"""Search spaces that Optuna's ranges cannot state (``custom_search_space`` of the sweeper)."""

from __future__ import annotations

from omegaconf import DictConfig


def has_patch_side(cfg: DictConfig, trial) -> None:
    """HaS's patch side (``method.grid_size``, pixels) over the divisors of the crop size up to
    half of it (docs/search.md), for ``custom_search_space`` of the Optuna sweeper; then the
    pooling's knobs (:func:`pooling_space`), which this space replaces in HaS's search."""
    crop = int(cfg.data.crop_size)
    sides = [d for d in range(1, crop // 2 + 1) if crop % d == 0]
    trial.suggest_categorical("method.grid_size", sides)
    pooling_space(cfg, trial)


def lse_space(trial) -> None:
    """LSE's sharpness: LogUniform[0.1, 100] (from near GAP to near GMP; camexp's range)."""
    trial.suggest_float("model.pool_r", 0.1, 100.0, log=True)


def wildcat_space(trial) -> None:
    """WILDCAT's knobs (camexp's ranges): maps per class 1..8, ``k_max`` Uniform[0.01, 0.99]
    and ``k_min`` Uniform[0, 0.99] (fractions of the positions), ``alpha`` Uniform[0, 1]."""
    trial.suggest_int("model.pool_maps", 1, 8)
    trial.suggest_float("model.pool_k_max", 0.01, 0.99)
    trial.suggest_float("model.pool_k_min", 0.0, 0.99)
    trial.suggest_float("model.pool_alpha", 0.0, 1.0)


def no_knobs(trial) -> None:
    """GAP and GMP have no setting of their own."""


# model.pool -> its search space
POOL_SPACES = {"gap": no_knobs, "gmp": no_knobs, "lse": lse_space, "wildcat": wildcat_space}


def pooling_space(cfg: DictConfig, trial) -> None:
    """The knobs of the pooling the search trains (``model.pool``), for ``custom_search_space``
    of the Optuna sweeper (docs/search.md)."""
    model = cfg.get("model") or {}
    POOL_SPACES[str(model.get("pool", "gap"))](trial)


# -- the end of a sweep ---------------------------------------------------------------------

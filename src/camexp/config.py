"""Early checks of a composed config: one clear line per mistake, before any data is touched."""

from __future__ import annotations

from omegaconf import DictConfig

from camexp.errors import UserError
from camexp.models import BACKBONES, POOLS
from camexp.module import SCHEDULERS


class ConfigError(UserError, ValueError):
    """A config value is not allowed; the message names the key, the value and the choices."""


def _check_choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; use one of {sorted(allowed)}.")


def _check_positive(key: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive integer.")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first disallowed value in the model and data groups."""
    model = cfg.get("model")
    if model is not None:
        _check_choice("model.arch", model.get("arch"), BACKBONES)
        _check_choice("model.pool", model.get("pool"), POOLS)
        _check_positive("model.num_classes", model.get("num_classes"))
        _check_positive("model.head.width", model.head.get("width"))
        if not isinstance(model.head.get("num_convs"), int) or model.head.num_convs < 0:
            raise ConfigError(f"model.head.num_convs={model.head.num_convs!r} must be an integer >= 0.")
        _check_choice("model.scheduler.name", model.scheduler.get("name"), SCHEDULERS)
        if model.get("pretrained") and BACKBONES[model.arch].imagenet_weights is None:
            raise ConfigError(
                f"model.pretrained=true, but model.arch={model.arch!r} has no ImageNet weights; "
                "set model.pretrained=false."
            )
    data = cfg.get("data")
    if data is not None:
        _check_positive("data.batch_size", data.get("batch_size"))
        _check_positive("data.num_classes", data.get("num_classes"))
        if not 0.0 < float(data.get("val_fraction", 0.1)) < 1.0:
            raise ConfigError(f"data.val_fraction={data.val_fraction!r} must be in (0, 1).")

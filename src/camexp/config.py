"""Early checks of a composed config: one clear line per mistake, before any data is touched."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

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
        for key in ("channels_last", "compile"):
            if not isinstance(model.get(key, False), bool):
                raise ConfigError(f"model.{key}={model.get(key)!r} must be true or false.")
        if model.get("pretrained") and BACKBONES[model.arch].imagenet_weights is None:
            raise ConfigError(
                f"model.pretrained=true, but model.arch={model.arch!r} has no ImageNet weights; "
                "set model.pretrained=false."
            )
        if cfg.get("method") is not None:
            _check_method(cfg.method, model.arch)
    localization = cfg.get("localization")
    if localization is not None:
        _check_localization(localization)
    data = cfg.get("data")
    if data is not None:
        _check_positive("data.batch_size", data.get("batch_size"))
        _check_positive("data.num_classes", data.get("num_classes"))
        if not 0.0 < float(data.get("val_fraction", 0.1)) < 1.0:
            raise ConfigError(f"data.val_fraction={data.val_fraction!r} must be in (0, 1).")
        _check_batch_over_devices(data.batch_size, cfg.get("trainer"))
        _check_choice("data.split", data.get("split", "official"), ("official", "wsol"))
        _check_choice("data.on_bad_image", data.get("on_bad_image", "error"), ("error", "skip"))
        _check_choice("data.train_on", data.get("train_on", "train"), ("train", "val"))
        _check_choice("data.decode_device", data.get("decode_device", "cpu"), ("cpu", "cuda"))


def _check_method(method: DictConfig, arch: str) -> None:
    """Build the training method (its settings are checked there) and check its placement."""
    from hydra.errors import InstantiationException

    from camexp.module import build_method

    try:
        build_method(OmegaConf.to_container(method, resolve=True)).check(arch)
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise ConfigError(
            f"method: cannot build {method.get('_target_')!r}: {error.__cause__ or error}. "
            "Check method._target_ (a camexp.methods.Method class) and its settings."
        ) from None


def _check_fraction(key: str, value, low_open: bool, high_open: bool) -> None:
    """``value`` must lie in [0, 1] with the given ends excluded."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ConfigError(f"{key}={value!r} must be a number in {interval}.")


def _check_localization(localization: DictConfig) -> None:
    from camexp.callbacks.localization import METHODS

    _check_choice("localization.method", localization.get("method"), METHODS)
    _check_fraction("localization.cam_curve_interval", localization.get("cam_curve_interval"),
                    low_open=True, high_open=False)
    _check_fraction("localization.paper_fraction", localization.get("paper_fraction"),
                    low_open=False, high_open=True)
    _check_fraction("localization.paper_iou", localization.get("paper_iou"),
                    low_open=True, high_open=False)
    for iou in localization.get("iou_thresholds") or []:
        if not isinstance(iou, (int, float)) or not 1 <= iou <= 100:
            raise ConfigError(
                f"localization.iou_thresholds contains {iou!r}; IoU thresholds are percentages "
                "in [1, 100] (not fractions), e.g. [30, 50, 70]."
            )


def _check_batch_over_devices(batch_size: int, trainer: DictConfig | None) -> None:
    """``data.batch_size`` is global: it must split evenly over the processes (when the
    device count is known at composition; ``devices=-1``/``auto`` is checked at start-up)."""
    if trainer is None:
        return
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        processes = devices * int(nodes)
        if batch_size % processes:
            raise ConfigError(
                f"data.batch_size={batch_size} (the global batch) does not divide by "
                f"trainer.devices x trainer.num_nodes = {processes}; use a multiple of {processes}."
            )

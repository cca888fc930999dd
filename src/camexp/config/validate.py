"""Early checks of a composed config: one clear line per mistake, before any data is touched."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from camexp.core.errors import ConfigError, UserError
from camexp.core.values import check_choice, check_count, check_flag, check_fraction, check_positive
from camexp.models import BACKBONES, POOL_SETTINGS, POOLS, make_pool
from camexp.modules.cam_classifier import SCHEDULERS
from camexp.modules.optimizers import OPTIMIZERS


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first disallowed value in the model and data groups."""
    model = cfg.get("model")
    if model is not None and "arch" not in model and "name" in model:  # model=torchvision|timm
        from hydra.utils import get_class

        check_choice("model.name", model.get("name"), ConfigError,
                     get_class(model._target_).model_names())
        check_positive("model.num_classes", model.get("num_classes"), ConfigError)
    elif model is not None:
        check_choice("model.arch", model.get("arch"), ConfigError, BACKBONES)
        check_choice("model.pool", model.get("pool"), ConfigError, POOLS)
        make_pool(model.pool, ConfigError, **{key: model.get(key) for key in POOL_SETTINGS})
        if model.get("num_classes") is not None:  # None: counted from the dataset (data=cub)
            check_positive("model.num_classes", model.get("num_classes"), ConfigError)
        check_positive("model.head.width", model.head.get("width"), ConfigError)
        check_count("model.head.num_convs", model.head.get("num_convs"), ConfigError)
        check_choice("model.scheduler.name", model.scheduler.get("name"), ConfigError, SCHEDULERS)
        _check_optimization(model)
        _check_backbone(model, cfg.get("data"))
        for key in ("channels_last", "compile"):
            check_flag(f"model.{key}", model.get(key, False), ConfigError)
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
        check_positive("data.batch_size", data.get("batch_size"), ConfigError)
        if data.get("num_classes") is not None:  # None: counted from the dataset (classes.txt)
            check_positive("data.num_classes", data.get("num_classes"), ConfigError)
        if not 0.0 < float(data.get("val_fraction", 0.1)) < 1.0:
            raise ConfigError(f"data.val_fraction={data.val_fraction!r} must be in (0, 1).")
        _check_batch_over_devices(data.batch_size, cfg.get("trainer"))
    if cfg.get("trainer") is not None:
        check_accelerator(cfg.trainer)
        check_choice("data.split", data.get("split", "official"), ConfigError, ("official", "wsol"))
        check_choice("data.on_bad_image", data.get("on_bad_image", "error"), ConfigError, ("error", "skip"))
        check_choice("data.train_on", data.get("train_on", "train"), ConfigError, ("train", "val"))
        check_choice("data.decode_device", data.get("decode_device", "cpu"), ConfigError, ("cpu", "cuda"))
        if data.get("eval_batch_size") is not None:
            check_positive("data.eval_batch_size", data.get("eval_batch_size"), ConfigError)
        _check_crop(data)
    check_added_keys(cfg)


def _check_optimization(model: DictConfig) -> None:
    """The optimizer's name and a multi-step schedule's milestones."""
    optim = model.get("optim") or {}
    check_choice("model.optim.name", optim.get("name", "sgd"), ConfigError, OPTIMIZERS)
    if model.scheduler.get("name") == "multistep":
        milestones = model.scheduler.get("milestones")
        if not milestones or any(not isinstance(m, int) or isinstance(m, bool) or m < 0
                                 for m in milestones):
            raise ConfigError(
                f"model.scheduler.milestones={OmegaConf.to_container(milestones) if milestones else milestones!r}: "
                "model.scheduler.name=multistep needs a list of epochs (integers >= 0) at which "
                "the learning rate is multiplied by gamma, e.g. [10,12]."
            )


def _check_backbone(model: DictConfig, data: DictConfig | None) -> None:
    """``model.backbone``'s keys are the backbone's own settings; a transformer's ``img_size``
    is the data's crop and evaluation size."""
    from camexp.models.networks import backbone_settings

    backbone = model.get("backbone") or {}
    accepted = backbone_settings(model.arch)
    for key in backbone:
        if key not in accepted:
            raise ConfigError(
                f"model.backbone.{key} is not a setting of model.arch={model.arch!r}; its backbone "
                f"settings are {accepted or 'none'} (transformers take img_size and drop_path)."
            )
    size = backbone.get("img_size")
    if size is None or data is None:
        return
    check_positive("model.backbone.img_size", size, ConfigError)
    eval_size = list(data.get("eval_size") or [])
    if data.get("crop_size") != size or eval_size != [size, size]:
        raise ConfigError(
            f"model.backbone.img_size={size} but data.crop_size={data.get('crop_size')} and "
            f"data.eval_size={eval_size}: a transformer sees one square size (its position "
            f"embeddings have one entry per patch). Set data.crop_size={size} and "
            f"data.eval_size=[{size},{size}] (or model.backbone.img_size to your crop)."
        )


def _check_method(method: DictConfig, arch: str) -> None:
    """Build the training method (its settings are checked there) and check its placement."""
    from hydra.errors import InstantiationException

    from camexp.modules.cam_classifier import build_method

    try:
        build_method(OmegaConf.to_container(method, resolve=True)).check(arch)
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise ConfigError(
            f"method: cannot build {method.get('_target_')!r}: {error.__cause__ or error}. "
            "Check method._target_ (a camexp.methods.Method class) and its settings."
        ) from None


def _check_crop(data: DictConfig) -> None:
    crop, resize = data.get("crop_size"), data.get("resize_size")
    if crop is None or resize is None:
        return
    check_positive("data.crop_size", crop, ConfigError)
    sizes = [resize] if isinstance(resize, int) else list(resize)
    if crop > min(sizes):
        raise ConfigError(
            f"data.crop_size={crop} is larger than data.resize_size={sizes}: the training crop "
            f"must fit inside the resized image. Use data.crop_size<={min(sizes)} or a larger "
            "data.resize_size."
        )


# top-level keys that a camexp tool reads although no config declares them
READ_BY_NAME = {"paper_preset"}
# groups whose new entries are instantiated (a new callback or logger)
OPEN_GROUPS = ("callbacks", "logger", "hydra")


def _accepted_arguments(target: str) -> set[str] | None:
    """Keyword arguments that ``target`` (a class or function path) accepts; None: any."""
    import inspect

    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception:
        return None
    names: set[str] = set()
    for owner in (obj.__mro__ if inspect.isclass(obj) else (obj,)):
        function = owner.__init__ if inspect.isclass(obj) else owner
        if inspect.isclass(obj) and "__init__" not in vars(owner):
            continue
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return names
        if not inspect.isclass(obj):
            return None
    return None


def check_added_keys(cfg: DictConfig) -> None:
    """``+group.key=value`` overrides that nothing reads: an error where the group's
    constructor would refuse the key (a traceback otherwise), a warning elsewhere; both name
    the keys the group has."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return
    try:
        overrides = list(HydraConfig.get().overrides.task)
        groups = set(HydraConfig.get().runtime.choices)
    except Exception:
        return
    for override in overrides:
        if not override.startswith("+") or override.startswith("++") or "=" not in override:
            continue
        key = override[1:].split("=", 1)[0].split("@", 1)[0]
        parts = key.split(".")
        if parts[0] in OPEN_GROUPS or key in groups or (len(parts) == 1 and key in READ_BY_NAME):
            continue
        parent_key = ".".join(parts[:-1])
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig):
            continue
        known = sorted(str(k) for k in parent if k != parts[-1] and not str(k).startswith("_"))
        where = parent_key or "the top level"
        target = parent.get("_target_") if parent_key else None
        accepted = _accepted_arguments(target) if isinstance(target, str) else set()
        if accepted is not None and target is not None and parts[-1] not in accepted:
            raise ConfigError(
                f"{override}: {where} has no key {parts[-1]!r}, and {target} does not take one. "
                f"{where} has: {', '.join(known)}. Fix the key's name (and drop the '+', which "
                "adds a new key)."
            )
        if accepted is None or (target is not None and parts[-1] in accepted):
            continue
        print(f"camexp: warning: {override} adds the key {key!r}, which nothing reads. "
              f"{where} has: {', '.join(known)}. Fix the key's name (and drop the '+').")


def _check_localization(localization: DictConfig) -> None:
    from camexp.maps.registry import MAP_SOURCES

    check_choice("localization.method", localization.get("method"), ConfigError, MAP_SOURCES)
    check_fraction("localization.cam_curve_interval", localization.get("cam_curve_interval"),
                   ConfigError, low_open=True)
    check_fraction("localization.paper_fraction", localization.get("paper_fraction"), ConfigError,
                   high_open=True)
    check_fraction("localization.paper_iou", localization.get("paper_iou"), ConfigError,
                   low_open=True)
    target_layer = localization.get("target_layer")
    if target_layer is not None and (not isinstance(target_layer, str) or not target_layer):
        raise ConfigError(f"localization.target_layer={target_layer!r} must be a dotted module name "
                          "(e.g. layer4, head, features.29) or null for the network's default.")
    for key in ("relu", "aug_smooth", "eigen_smooth"):
        if key in localization:
            check_flag(f"localization.{key}", localization.get(key), ConfigError)
    if localization.get("box_rule") is not None:
        from camexp.localization.box_rule import BoxRule

        rule = localization.box_rule
        if not isinstance(rule, DictConfig):
            raise ConfigError(f"localization.box_rule={rule!r} must be null or a mapping "
                              "{rule, threshold, iou, resize, gt_known_map} (docs/protocol.md).")
        BoxRule.from_config(OmegaConf.to_container(rule, resolve=True), ConfigError)
    if "posthoc_batch_size" in localization:
        check_positive("localization.posthoc_batch_size", localization.get("posthoc_batch_size"), ConfigError)
    if "rollout_head_fusion" in localization:
        from camexp.maps.rollout import HEAD_FUSIONS

        check_choice("localization.rollout_head_fusion", localization.get("rollout_head_fusion"),
                     ConfigError, HEAD_FUSIONS)
    if "rollout_discard" in localization:
        check_fraction("localization.rollout_discard", localization.get("rollout_discard"),
                       ConfigError, high_open=True)
    for iou in localization.get("iou_thresholds") or []:
        if not isinstance(iou, (int, float)) or not 1 <= iou <= 100:
            raise ConfigError(
                f"localization.iou_thresholds contains {iou!r}; IoU thresholds are percentages "
                "in [1, 100] (not fractions), e.g. [30, 50, 70]."
            )


TORCHVISION_MODEL = "camexp.modules.torchvision_classifier.TorchvisionClassifier"


def check_trainable(cfg: DictConfig) -> None:
    """``camexp.train`` trains camexp's CAM networks; ``model=torchvision`` only tests one of
    torchvision's classifiers as it is (``camexp.eval``)."""
    model = cfg.get("model")
    if model is not None and model.get("_target_") == TORCHVISION_MODEL:
        raise ConfigError(
            "model=torchvision cannot train: it is torchvision's classifier as it is, for "
            "camexp.eval to test and score with post-hoc maps (python -m camexp.eval "
            "model=torchvision model.name=resnet50 localization.method=gradcam ...). "
            "camexp.train trains camexp's CAM networks: model=vgg_gap, googlenet_gap, "
            "resnet50_gap, inceptionv3_gap, ... (conf/model/), from ImageNet weights with "
            "model.pretrained=true.")


def check_accelerator(trainer: DictConfig) -> None:
    """``trainer=gpu``/``ddp`` (``trainer.accelerator=gpu``) on a machine where torch finds no
    GPU (or fewer than ``trainer.devices``): one paragraph, not Lightning's exception."""
    accelerator = str(trainer.get("accelerator") or "auto").lower()
    if accelerator not in ("gpu", "cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    devices = trainer.get("devices")
    wanted = devices if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0 else 1
    if count >= wanted:
        return
    build = (f"; this torch {torch.__version__} is a CPU-only build, install a CUDA build of the "
             "pinned version" if torch.version.cuda is None else "")
    found = ("torch finds no GPU on this machine (torch.cuda.is_available() is false"
             f"{build})" if count == 0 else f"torch finds {count} GPU(s)")
    raise ConfigError(
        f"trainer.accelerator={accelerator} (trainer=gpu or trainer=ddp) asks for "
        f"{wanted} GPU(s), but {found}. Run where the GPUs are visible (nvidia-smi, "
        "CUDA_VISIBLE_DEVICES), set trainer.devices to the GPUs there are, or use trainer=cpu "
        "(the default).")


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


# -- Hydra's own "Key 'x' is not in struct" -----------------------------------------------------

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
NOT_IN_STRUCT = re.compile(r"Key '([^']+)' is not in struct\s+full_key: (\S+)")
# command-line flags of Hydra that take a value (dropped, with it, when composing again)
FLAGS_WITH_VALUE = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp",
                    "--experimental-rerun", "--info", "-i")


def _first_value(override: str) -> str | None:
    """A sweep ``key=a,b`` as its first job's ``key=a``; None for a sweep function (``choice(``,
    ``range(``, ``interval(``...) that no single job's value can stand for."""
    key, sep, value = override.partition("=")
    if not sep:
        return override
    if re.match(r"^\w+\(", value):
        return None
    depth, first = 0, value
    for index, char in enumerate(value):
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            first = value[:index]
            break
    return f"{key}={first}"


def _compose_without(config_name: str, argv: Sequence[str], bad_key: str) -> DictConfig | None:
    """The config of this command line without its override of ``bad_key`` (None when it
    cannot be composed either)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config_dir, overrides, skip = CONF_DIR, [], False
    for index, token in enumerate(argv):
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in ("--config-dir", "-cd"):
            config_dir = Path(token.split("=", 1)[1] if "=" in token else argv[index + 1])
        if token.startswith("-"):
            skip = "=" not in token and name in FLAGS_WITH_VALUE
            continue
        key = token.lstrip("+~").split("=", 1)[0]
        if key == bad_key or key.startswith((f"{bad_key}.", "hydra.", "hydra/")):
            continue
        first = _first_value(token)
        if first is not None:
            overrides.append(first)
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(Path(config_dir).resolve()), version_base="1.3"):
            return compose(config_name, overrides=overrides)
    except Exception:
        return None
    finally:
        GlobalHydra.instance().clear()


def unknown_key_hint(text: str, config_name: str, argv: Sequence[str]) -> str | None:
    """For Hydra's "Key 'pol' is not in struct" of a mistyped override: one paragraph naming
    the closest keys of its group and every key the group has (as :func:`check_added_keys`
    does for ``+key`` typos); None for other errors."""
    import difflib

    match = NOT_IN_STRUCT.search(text)
    if not match:
        return None
    full_key = match.group(2)
    cfg = _compose_without(config_name, argv, full_key)
    if cfg is None:
        return None
    parent_key, _, leaf = full_key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig):
        return None
    keys = sorted(str(k) for k in parent if not str(k).startswith("_"))
    close = difflib.get_close_matches(leaf, keys, n=3, cutoff=0.6)
    where = parent_key or "the top level"
    prefix = f"{parent_key}." if parent_key else ""
    guess = (f" Did you mean {' or '.join(prefix + k for k in close)}?" if close else "")
    return (f"camexp: {full_key}: {where} has no key {leaf!r}.{guess} {where[0].upper()}{where[1:]} "
            f"has: {', '.join(keys)}. Fix the key's name (a '+' would add a key that nothing reads).")

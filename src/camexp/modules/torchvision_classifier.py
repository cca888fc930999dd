"""torchvision's classifiers as they are, for evaluation only: ``model=torchvision model.name=...``.

No training and no checkpoint: the network is torchvision's definition with its weights
enum's state dict (or ``model.weights_path``), and its maps come from a post-hoc method
(``localization.method=gradcam``, ...). Preprocessing follows the enum's ``transforms()``:
its mean and std normalize the batches here. Its resize-then-centre-crop is *not* applied:
the WSOL protocol resizes the whole image to ``data.eval_size`` so every box stays in the
picture (docs/protocol.md); set ``data.eval_size`` to the enum's crop size (224 for most,
299 for inception_v3) to match the resolution the weights were trained at (a warning says so).
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from camexp.core.errors import WeightsError
from camexp.maps.target_layers import torchvision_default
from camexp.models.weights import read_state_dict


def classification_models() -> list[str]:
    """torchvision's image classification model names (``torchvision.models.list_models``)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _densenet_forward(self, x: Tensor) -> Tensor:
    """DenseNet's forward with its final ReLU out of place: the in-place one would overwrite
    the ``features`` maps that post-hoc methods read (same logits)."""
    out = F.relu(self.features(x))
    out = F.adaptive_avg_pool2d(out, (1, 1))
    return self.classifier(torch.flatten(out, 1))


def load_whole_state(net: nn.Module, state: dict[str, Tensor], what: str, fix: str) -> None:
    """Load every entry of ``net`` from ``state`` by name; ``what`` (which file does not fit
    which network) and ``fix`` make the paragraph naming the missing and mis-shaped entries."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or mismatched:
        raise WeightsError(f"{what}: missing {missing[:3]}, other shape "
                           f"{[(k, tuple(state[k].shape)) for k in mismatched[:3]]}. {fix}")
    net.load_state_dict({k: state[k] for k in own}, strict=True)


def build_torchvision(name: str, num_classes: int, weights: str = "DEFAULT",
                      weights_path: str | None = None) -> tuple[nn.Module, object]:
    """torchvision model ``name`` with ``num_classes`` outputs and its weights loaded; returns
    the network and its weights enum member (for the preprocessing)."""
    import torchvision

    names = classification_models()
    if name not in names:
        from camexp.core.errors import ConfigError

        raise ConfigError(f"model.name={name!r} is not a torchvision classification model; use one of {names}.")
    enum = torchvision.models.get_model_weights(name)
    try:
        member = enum.DEFAULT if weights in (None, "DEFAULT") else enum[weights]
    except KeyError:
        from camexp.core.errors import ConfigError

        raise ConfigError(f"model.weights={weights!r} is not a weights of {name}; use DEFAULT or one "
                          f"of {[w.name for w in enum]}.") from None
    extra = {"transform_input": True, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)
    if weights_path:
        state, source = read_state_dict(weights_path), f"Weights file {weights_path}"
    else:
        try:
            state, source = member.get_state_dict(progress=True, check_hash=True), str(member)
        except Exception as error:  # no internet, hash mismatch: the same advice
            filename = member.url.rsplit("/", 1)[-1]
            raise WeightsError(
                f"Could not get the weights of torchvision's {name} ({member}) from {member.url}: "
                f"{error}. On a machine without internet, download that file elsewhere and pass "
                f"model.weights_path=/path/to/{filename}."
            ) from error
    load_whole_state(net, state, f"{source} does not fit torchvision's {name} with model.num_classes="
                     f"{num_classes}", "Check model.name and data.num_classes (torchvision's ImageNet "
                     "weights have 1000 classes).")
    if name.startswith("densenet"):
        net.forward = types.MethodType(_densenet_forward, net)
    return net.eval(), member


class TorchvisionClassifier(L.LightningModule):
    """Test a torchvision classifier: logits, accuracy, and (through the localization
    callback) post-hoc maps of ``localization.target_layer`` (default per family).

    Args:
        name: a torchvision classification model (``resnet50``, ``vgg16``, ``densenet121``, ...).
        num_classes: outputs (1000 for torchvision's ImageNet weights).
        weights: the weights enum member's name (``DEFAULT``, ``IMAGENET1K_V1``, ...).
        weights_path: a local state dict of that architecture (wins over downloading).
    """

    def __init__(self, name: str, num_classes: int, weights: str = "DEFAULT",
                 weights_path: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net, self.weights_member = build_torchvision(name, num_classes, weights, weights_path)
        self.network_name = f"torchvision's {name}"
        preset = self.weights_member.transforms()
        self._prepare_test(preset.mean, preset.std, int(preset.crop_size[0]), num_classes)

    def _prepare_test(self, mean: Sequence[float], std: Sequence[float], crop_size: int,
                      num_classes: int) -> None:
        """The normalization and input size the weights were trained with, and the test's
        top-1 / top-5 accuracies."""
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.crop_size = crop_size
        self.checked_size = False
        top_k = min(5, num_classes)
        self.metrics = nn.ModuleDict({
            f"test_{n}": MulticlassAccuracy(num_classes, top_k=k, average="micro")
            for n, k in (("acc_top1", 1), ("acc_top5", top_k))
        })

    def default_target_layer(self) -> str | None:
        return torchvision_default(self.hparams.name, self.net)

    @classmethod
    def model_names(cls) -> list[str]:
        """The names ``model.name`` may take (the config check lists them)."""
        return classification_models()

    @override
    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    @override
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        image = batch["image"]
        if not self.checked_size and tuple(image.shape[-2:]) != (self.crop_size, self.crop_size):
            rank_zero_warn(
                f"{self.network_name} weights ({self.weights_member}) were trained at "
                f"{self.crop_size}x{self.crop_size}; images are evaluated at {tuple(image.shape[-2:])} "
                f"(data.eval_size). Set data.eval_size=[{self.crop_size},{self.crop_size}] to match."
            )
        self.checked_size = True
        batch["input"] = (image.float() / 255.0 - self.mean) / self.std
        return batch

    @override
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        logits = self.net(batch["input"])
        size = len(logits)
        self.log("test/loss", F.cross_entropy(logits, batch["label"]), on_epoch=True,
                 sync_dist=True, batch_size=size)
        for name in ("acc_top1", "acc_top5"):
            metric = self.metrics[f"test_{name}"]
            metric.update(logits, batch["label"])
            self.log(f"test/{name}", metric, on_epoch=True, prog_bar=name == "acc_top1", batch_size=size)
        return {"logits": logits.detach()}

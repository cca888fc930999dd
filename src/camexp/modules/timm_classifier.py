"""timm's classifiers as they are, for evaluation only: ``model=timm model.name=...``.

As ``model=torchvision`` (:mod:`camexp.modules.torchvision_classifier`): no training and no
checkpoint; the network is timm's definition with timm's pretrained weights (downloaded by timm
or from its cache) or ``model.weights_path`` (a state dict of that architecture by timm's names;
a ViT's position embedding saved for another size is resampled to ``model.img_size``), its maps
come from a post-hoc method (``localization.method=gradcam``, ``rollout``, ...), and its
pretrained config's mean and std normalize the batches. A ViT's tokens are reshaped to their
grid for the post-hoc methods (:mod:`camexp.maps.target_layers`), whose default target layer is
the last block's first LayerNorm.
"""

from __future__ import annotations

import lightning as L
from torch import nn

from camexp.core.errors import ConfigError, WeightsError
from camexp.maps.target_layers import timm_default
from camexp.models.vit import read_weights_file, resample_position
from camexp.models.weights import read_state_dict
from camexp.modules.torchvision_classifier import TorchvisionClassifier, load_whole_state


def timm_models() -> list[str]:
    """timm's model names (``timm.list_models()``)."""
    import timm

    return timm.list_models()


def build_timm(name: str, num_classes: int, weights_path: str | None = None,
               img_size: int | None = None) -> nn.Module:
    """timm model ``name`` with ``num_classes`` outputs and its weights loaded."""
    import timm

    if name not in timm_models():
        raise ConfigError(f"model.name={name!r} is not a timm model (timm.list_models() lists them, "
                          "e.g. deit_small_patch16_224, vit_base_patch16_224).")
    size = {"img_size": int(img_size)} if img_size else {}
    net = timm.create_model(name, pretrained=False, num_classes=num_classes, **size)
    if weights_path:
        state = read_weights_file(weights_path, read_state_dict)
        source = f"Weights file {weights_path}"
    else:
        published = int(net.pretrained_cfg.get("num_classes") or 1000)
        if num_classes != published:
            raise ConfigError(
                f"timm's pretrained {name} has {published} classes but model.num_classes={num_classes} "
                "(data.num_classes): its classifier would be new, untrained. Evaluate it on "
                "ImageNet, or pass model.weights_path= weights with your classes."
            )
        try:
            state = timm.create_model(name, pretrained=True, **size).state_dict()
        except Exception as error:  # no internet, no cache: the same advice
            raise WeightsError(
                f"Could not get timm's pretrained {name}: {' '.join(str(error).split())[:300]}. Either run "
                "once on a machine with internet (timm keeps the weights in its Hugging Face "
                "cache for later runs offline), or pass model.weights_path=/path/to/its weights."
            ) from error
        source = f"timm's pretrained {name}"
    resample_position(state, net)
    load_whole_state(net, state, f"{source} does not fit timm's {name} with model.num_classes={num_classes}",
                     "Check model.name and data.num_classes.")
    return net.eval()


class TimmClassifier(TorchvisionClassifier):
    """Test a timm classifier: logits, accuracy, and post-hoc maps (see the module docstring).

    Args:
        name: a timm model name (``deit_small_patch16_224``, ``vit_base_patch16_224``, ...).
        num_classes: outputs (1000 for timm's ImageNet weights).
        weights_path: a local state dict of that architecture (wins over downloading).
        img_size: the input size the model is built for (a ViT's position embeddings); None:
            timm's default (224 for most).
    """

    def __init__(self, name: str, num_classes: int, weights_path: str | None = None,
                 img_size: int | None = None) -> None:
        L.LightningModule.__init__(self)
        self.save_hyperparameters()
        self.net = build_timm(name, num_classes, weights_path, img_size)
        config = self.net.pretrained_cfg
        self.weights_member = f"timm's {name}"
        self.network_name = f"timm's {name}"
        self._prepare_test(config["mean"], config["std"], int(img_size or config["input_size"][-1]),
                           num_classes)

    def default_target_layer(self) -> str | None:
        return timm_default(self.net)

    @classmethod
    def model_names(cls) -> list[str]:
        return timm_models()

"""The trained method's own localization map (``localization.method=cam``): CAM, ACoL's fused
map, FSL's foreground map..., from the evaluation step's outputs (no second forward pass)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor
from typing_extensions import override

from camexp.core.errors import UserError
from camexp.maps.posthoc import POSTHOC_METHODS
from camexp.maps.sources import MapSource

if TYPE_CHECKING:
    import lightning as L


class TrainedMaps(MapSource):
    """``pl_module.class_maps(outputs, classes)``: the map its training method defines."""

    name = "cam"

    @override
    def start(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not callable(getattr(pl_module, "class_maps", None)):
            raise UserError(
                f"localization.method=cam needs a network with class activation maps (a camexp "
                f"model); {type(pl_module).__name__} has none. Use a post-hoc method instead, "
                f"e.g. localization.method=gradcam (one of {sorted(POSTHOC_METHODS)}), or backprop."
            )

    @override
    def class_maps(self, pl_module: L.LightningModule, outputs: dict[str, Tensor],
                   batch: dict[str, Any], classes: Tensor) -> Tensor:
        return pl_module.class_maps(outputs, classes)

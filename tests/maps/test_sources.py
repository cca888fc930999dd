"""Map sources: chosen by name once, each method's costs as before, one computation per batch."""

from __future__ import annotations

import pytest
import torch

from camexp.core.errors import UserError
from camexp.maps.backprop import BackpropSaliency
from camexp.maps.posthoc import PER_CHANNEL, POSTHOC_METHODS, PosthocSource
from camexp.maps.registry import MAP_SOURCES, map_source
from camexp.maps.sources import MapSettings, MapSource
from camexp.maps.trained import TrainedMaps

# the post-hoc methods' facts as the table before them stated them: library class, gradients,
# extra forward passes, class-specific (and the per-channel pair)
FORMER_TABLE = {
    "gradcam": ("GradCAM", True, "none", True),
    "hirescam": ("HiResCAM", True, "none", True),
    "gradcamelementwise": ("GradCAMElementWise", True, "none", True),
    "xgradcam": ("XGradCAM", True, "none", True),
    "gradcampp": ("GradCAMPlusPlus", True, "none", True),
    "layercam": ("LayerCAM", True, "none", True),
    "eigengradcam": ("EigenGradCAM", True, "none", True),
    "shapleycam": ("ShapleyCAM", True, "none (plus a Hessian-vector product)", True),
    "fullgrad": ("FullGrad", True, "none (gradients of every bias layer and the input)", True),
    "randomcam": ("RandomCAM", True, "none (random channel weights: a floor)", True),
    "scorecam": ("ScoreCAM", False, "one per channel of the target layer", True),
    "ablationcam": ("AblationCAM", False, "one per channel of the target layer", True),
    "eigencam": ("EigenCAM", False, "none", False),
    "kpcacam": ("KPCA_CAM", False, "none", False),
    "fem": ("FEM", False, "none", False),
}


def test_each_method_name_picks_its_source_class_with_the_settings() -> None:
    assert list(MAP_SOURCES) == ["cam", "backprop", *FORMER_TABLE, "rollout"]
    assert isinstance(map_source("cam"), TrainedMaps)
    assert isinstance(map_source("backprop"), BackpropSaliency)
    source = map_source("scorecam", MapSettings(target_layer="head", batch_size=4))
    assert type(source) is POSTHOC_METHODS["scorecam"] and isinstance(source, PosthocSource)
    assert (source.settings.target_layer, source.settings.batch_size) == ("head", 4)
    with pytest.raises(ValueError, match=r"localization.method='gradcam2'; use one of \('cam', 'backprop'"):
        map_source("gradcam2")


def test_posthoc_sources_state_what_the_former_table_stated() -> None:
    stated = {name: (cls.library_class, cls.gradients, cls.extra_passes, cls.class_specific)
              for name, cls in POSTHOC_METHODS.items()}
    assert stated == FORMER_TABLE
    assert PER_CHANNEL == ("scorecam", "ablationcam")
    assert [n for n, cls in POSTHOC_METHODS.items() if not cls.one_pass] == ["shapleycam", "fullgrad"]
    import pytorch_grad_cam

    assert all(hasattr(pytorch_grad_cam, cls.library_class) for cls in POSTHOC_METHODS.values())


class _Counting(MapSource):
    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def class_maps(self, pl_module, outputs, batch, classes):
        self.calls += 1
        return classes[:, :, None, None].float().expand(-1, -1, 2, 2)


def test_a_batch_is_computed_once_for_the_ground_truth_and_the_top_five() -> None:
    source = _Counting()
    logits = torch.tensor([[0.1, 0.9, 0.3, 0.0, 0.5, 0.2, 0.8], [0.7, 0.0, 0.1, 0.2, 0.3, 0.4, 0.6]])
    batch, outputs = {"label": torch.tensor([3, 2])}, {"logits": logits}
    classes, maps = source.batch_maps(None, outputs, batch)
    assert classes.tolist() == [[3, 1, 6, 4, 2, 5], [2, 0, 6, 5, 4, 3]]
    assert maps.shape == (2, 6, 2, 2) and maps[1, 2, 0, 0] == 6
    again = source.batch_maps(None, outputs, batch)
    assert again[1] is maps and source.calls == 1  # the pictures ask about the same batch
    source.batch_maps(None, outputs, dict(batch))  # another batch
    assert source.calls == 2
    source.close()
    source.batch_maps(None, outputs, batch)
    assert source.calls == 3


def test_the_trained_maps_need_a_module_with_class_maps() -> None:
    class NoMaps(torch.nn.Module):
        pass

    with pytest.raises(UserError, match=r"localization.method=cam needs .*NoMaps has none.*gradcam"):
        TrainedMaps().start("test", None, NoMaps())

"""Every method's network loads torchvision's state dict into its trunk unchanged (ADL layers,
swapped pools and the ACoL/SPG branches shift no parameter name), and a whole method network's
state dict round-trips through ``model.weights_path``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torchvision import models as tvm

from camexp.methods.acol import ACoL
from camexp.methods.adl import ADL
from camexp.methods.base import Method
from camexp.methods.cam import CAM
from camexp.methods.cutmix import CutMix
from camexp.methods.has import HideAndSeek
from camexp.methods.spg import SPG
from camexp.models import CAMNet, WeightsError
from camexp.models.backbones import TinyNet
from tests.helpers.models import vgg16_without_fc

METHODS: dict[str, Callable[[], Method]] = {
    "cam": CAM, "has": HideAndSeek, "cutmix": CutMix, "adl": ADL, "acol": ACoL, "spg": SPG,
}
HEAD_CONVS = {"tiny": 1, "vgg16": 1, "resnet18": 0, "resnet50": 0}
# the torchvision layers the trunk cuts away (present in the file, ignored)
CUT_AWAY = {"tiny": (), "vgg16": ("classifier.",), "resnet18": ("fc.",), "resnet50": ("fc.",)}


def _torchvision_state(arch: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(1234)
    if arch == "tiny":
        model = TinyNet()
    elif arch == "vgg16":
        # fc6-fc8 (120M parameters, ~2 s to initialise) stay on meta and out of the file; the
        # trunk never reads them (resnet's fc covers the ignored keys)
        model = vgg16_without_fc()
        state = {key: value for key, value in model.state_dict().items() if not key.startswith("classifier.")}
        return state
    else:
        model = getattr(tvm, arch)(weights=None)
    state = model.state_dict()
    # BatchNorm statistics unlike a fresh network's, so that loading them is visible
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = torch.randn_like(value)
        elif key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(17)
    return state


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Per backbone, a torchvision state dict file and what it holds."""
    folder = tmp_path_factory.mktemp("torchvision_weights")
    files = {}
    for arch in ("tiny", "vgg16", "resnet18", "resnet50"):
        state = _torchvision_state(arch)
        torch.save(state, folder / f"{arch}.pth")
        files[arch] = (folder / f"{arch}.pth", state)
    return files


def _check_trunk_equals_file(net: CAMNet, arch: str, file_state: dict[str, torch.Tensor]) -> None:
    trunk = net.trunk.state_dict()
    kept = {key for key in file_state if not key.startswith(CUT_AWAY[arch])}
    assert set(trunk) == kept  # no key shifted, none lost, none added
    for key, value in trunk.items():
        assert torch.equal(value, file_state[key]), key


def _net(arch: str, method: str, weights_path: Path) -> CAMNet:
    return CAMNet(arch, 5, head_num_convs=HEAD_CONVS[arch], head_width=16, weights_path=weights_path,
                  method=METHODS[method]())


@pytest.mark.usefixtures("fast_vgg16")
@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("arch", ["tiny", "vgg16", "resnet18"])
def test_torchvision_state_loads_unchanged_into_every_methods_trunk(arch, method, torchvision_files):
    file, file_state = torchvision_files[arch]
    _check_trunk_equals_file(_net(arch, method, file), arch, file_state)


# HaS and CutMix build CAM's network (checked on tiny): their round trip is CAM's elsewhere
ROUND_TRIPS = [(arch, method) for arch in ("tiny", "vgg16", "resnet18") for method in sorted(METHODS)
               if arch == "tiny" or method not in ("has", "cutmix")]


@pytest.mark.usefixtures("fast_vgg16")
@pytest.mark.parametrize(("arch", "method"), ROUND_TRIPS)
def test_a_method_networks_whole_state_round_trips(arch, method, torchvision_files, tmp_path):
    torch.manual_seed(0)
    net = _net(arch, method, torchvision_files[arch][0])
    whole = tmp_path / "net.pth"
    torch.save(net.state_dict(), whole)
    torch.manual_seed(99)  # another initialisation: only the file can make the two equal
    saved, loaded = net.state_dict(), _net(arch, method, whole).state_dict()
    assert list(loaded) == list(saved)
    assert all(torch.equal(loaded[key], saved[key]) for key in saved)
    if method in ("acol", "spg"):
        assert any(key.startswith("method_layers.") for key in saved)
    if arch == "tiny" and method in ("has", "cutmix"):
        cam = _net(arch, "cam", torchvision_files[arch][0]).state_dict()
        assert [(k, v.shape) for k, v in cam.items()] == [(k, v.shape) for k, v in saved.items()]


def test_resnet50_loads_torchvisions_state_around_adls_layers(torchvision_files):
    """ResNet50 (~1 s a network) under the one method that changes its trunk: ADL inserts
    layers into layer3 and layer4 (the field's code had to shift the block indices). SPG only
    hooks its layers and ACoL uses its output as it is (structures checked in test_spg and
    test_acol). InceptionV3 is left out: its trunc-normal initialisation costs seconds per
    network, and ADL's layers there sit between top-level trunk children and at the head's
    end (test_adl), where ``insert_after`` renames nothing, as checked here on nested ones."""
    file, file_state = torchvision_files["resnet50"]
    _check_trunk_equals_file(_net("resnet50", "adl", file), "resnet50", file_state)


def test_fast_vgg16_trunk_is_torchvisions():
    """The fixture's VGG16 has torchvision's layers, names and shapes (checked on meta)."""
    with torch.device("meta"):
        reference = tvm.vgg16(weights=None)
    fast = vgg16_without_fc()
    assert [(k, v.shape) for k, v in fast.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert repr(fast.features) == repr(reference.features)


def test_a_cam_network_state_does_not_load_into_a_network_with_branches(tmp_path):
    torch.manual_seed(0)
    cam = CAMNet("tiny", 5, head_num_convs=2, head_width=16)
    file = tmp_path / "cam.pth"
    torch.save(cam.state_dict(), file)
    adl = CAMNet("tiny", 5, head_num_convs=2, head_width=16, weights_path=file, method=ADL())
    assert all(torch.equal(adl.state_dict()[k], v) for k, v in cam.state_dict().items())  # no new keys
    for method in (ACoL(), SPG()):
        with pytest.raises(WeightsError, match=r"missing \['method_layers\.") as info:
            CAMNet("tiny", 5, head_num_convs=2, head_width=16, weights_path=file, method=method)
        assert str(file) in str(info.value)

"""Methods place their layers by the backbones' point names: on every existing backbone exactly
where they were placed by module paths before, and on a newly registered backbone without any
change to the methods."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torchvision import models as tvm

from camexp.core.errors import MethodError
from camexp.methods.acol import ACoL
from camexp.methods.adl import ADL, ADLLayer
from camexp.methods.cam import CAM
from camexp.methods.spg import SPG
from camexp.models import BACKBONES, CAMNet
from camexp.models.backbones import BackboneSpec, Point, resnet_points, stage_points
from camexp.modules.cam_classifier import build_method
from tests.helpers.configs import CONF_DIR
from tests.helpers.models import meta_forward

# The module paths (from the network) that ADL, ACoL and SPG held per model.arch before the
# backbones declared points (camexp fd2a0bb: ADL_PLACEMENTS, VGG_POOLS, SPG_LAYOUTS), with
# SPG's tapped channels and (branch, C) widths. Every other (method, backbone) was refused.
OLD_PATHS = {
    ("adl", "vgg16"): ["trunk.features.16", "trunk.features.22", "trunk.features.29"],
    ("adl", "resnet50"): ["trunk.layer3.0", "trunk.layer4.0", "trunk.layer4.2"],
    ("adl", "resnet18"): ["trunk.layer3.0", "trunk.layer4.0", "trunk.layer4.1"],
    ("adl", "inception_v3"): ["trunk.Mixed_5d", "trunk.Mixed_6e", "head.relu2"],
    ("adl", "tiny"): ["trunk.features.pool2", "trunk.features.relu3", "trunk.features.relu4"],
    ("acol", "vgg16"): ["trunk.features.4", "trunk.features.9", "trunk.features.16", "trunk.features.23"],
    ("acol", "resnet50"): [], ("acol", "resnet18"): [], ("acol", "inception_v3"): [], ("acol", "tiny"): [],
    ("spg", "vgg16"): ["trunk.features.23", "trunk.features.29"],
    ("spg", "resnet50"): ["trunk.layer3.0", "trunk.layer3"],
    ("spg", "resnet18"): ["trunk.layer3.0", "trunk.layer3"],
    ("spg", "inception_v3"): ["trunk.Mixed_5d", "trunk.Mixed_6d"],
    ("spg", "tiny"): ["trunk.features.relu3", "trunk.features.relu4"],
}
OLD_SPG = {"vgg16": ((512, 512), (512, 512)), "resnet50": ((1024, 1024), (1024, 512)),
           "resnet18": ((256, 256), (256, 256)), "inception_v3": ((288, 768), (512, 512)),
           "tiny": ((96, 128), (64, 64))}
PLACED = {"adl": ADL, "acol": ACoL, "spg": SPG}
HEAD_CONVS = {"resnet50": 0, "resnet18": 0, "inception_v3": 2}


def _meta_net(arch: str, method) -> CAMNet:
    with torch.device("meta"):
        return CAMNet(arch, 5, head_num_convs=HEAD_CONVS.get(arch, 1), head_width=16, method=method)


def _adl_follows(net: nn.Module) -> list[str]:
    """The path of the module right before each ADL layer, in order."""
    found = []
    for parent_name, parent in net.named_modules():
        names = list(parent._modules)
        for index, name in enumerate(names):
            if isinstance(parent._modules[name], ADLLayer):
                found.append(f"{parent_name}.{names[index - 1]}".lstrip("."))
    return found


def _swapped_pools(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if isinstance(m, nn.MaxPool2d)
            and m.kernel_size == 3 and m.stride == 2 and name.startswith("trunk.features.")]


def _new_paths(name: str, net: CAMNet) -> list[str]:
    """Where the method placed its layers in the built network (found in the network)."""
    if name == "adl":
        return _adl_follows(net)
    if name == "acol":
        return _swapped_pools(net)
    return sorted(path for path, m in net.named_modules() if m._forward_hooks)


@pytest.mark.parametrize("arch", sorted(BACKBONES))
@pytest.mark.parametrize("name", sorted(PLACED))
def test_old_and_new_placement_paths_agree_on_every_backbone(name: str, arch: str) -> None:
    method = PLACED[name]()
    if (name, arch) not in OLD_PATHS:
        with pytest.raises(MethodError, match=f"method={name} defines its layer placements"):
            _meta_net(arch, method)
        return
    net = _meta_net(arch, method)
    old = OLD_PATHS[name, arch]
    assert _new_paths(name, net) == (sorted(old) if name == "spg" else old)
    plain = _meta_net(arch, CAM())
    own = dict(net.named_modules())
    # the same modules at the old paths (ACoL and SPG swap pools in place: same names)
    assert all(type(own[path]).__name__ == type(dict(plain.named_modules())[path]).__name__
               for path in old)
    # no parameter key moves, the branches aside
    assert [k for k in net.state_dict() if not k.startswith("method_layers.") and "head" not in k] == \
        [k for k in plain.state_dict() if "head" not in k]
    if name == "spg":
        taps, widths = OLD_SPG[arch]
        assert list(method._tapped) == old
        branch = net.method_layers
        assert (branch["b1"][0].in_channels, branch["b2"][0].in_channels) == taps
        assert (branch["b1"][0].out_channels, branch["c"][0].out_channels) == widths
        if arch == "vgg16":
            assert _swapped_pools(net) == ["trunk.features.23"]


# -- a backbone registered from outside the methods ---------------------------------------

def _method_configs() -> dict[str, dict]:
    """Every method of conf/method/, as its yaml builds it."""
    configs = {}
    for path in sorted(Path(CONF_DIR, "method").glob("*.yaml")):
        node = OmegaConf.to_container(OmegaConf.load(path))
        configs[path.stem] = node.get("method", node)
    return configs


def _resnet101() -> BackboneSpec:
    return dataclasses.replace(
        BACKBONES["resnet50"], name="resnet101", make_classifier=lambda: tvm.resnet101(weights=None),
        imagenet_weights=tvm.ResNet101_Weights.IMAGENET1K_V1,
        points=resnet_points((3, 4, 23, 3), (64, 256, 512, 1024, 2048)))


class MiniVGG(nn.Module):
    """A test's own VGG-style net: five conv stages of one conv each, a max-pool after the
    first four."""

    def __init__(self) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        widths, previous = (4, 8, 8, 16, 16), 3
        for stage, width in enumerate(widths, start=1):
            layers[f"conv{stage}"] = nn.Conv2d(previous, width, 3, padding=1)
            layers[f"act{stage}"] = nn.ReLU()
            if stage < 5:
                layers[f"down{stage}"] = nn.MaxPool2d(2)
            previous = width
        self.body = nn.Sequential(layers)


MINI_VGG = BackboneSpec(
    "mini_vgg", MiniVGG, lambda model: nn.Sequential(OrderedDict(body=model.body)), 16, 16, None,
    family="vgg",
    points=stage_points([("act1", 4), ("act2", 8), ("act3", 8), ("act4", 16), ("act5", 16)],
                        pools={1: "down1", 2: "down2", 3: "down3", 4: "down4"}, prefix="body."))


def _cnn_methods() -> list[str]:
    """The methods that run on a CNN (the transformer methods place theirs in a ViT's blocks)."""
    return [name for name, config in _method_configs().items()
            if (build_method(config).placements or {}).keys() - {"vit"} or not build_method(config).placements]


@pytest.mark.parametrize("method", _cnn_methods())
def test_every_method_builds_and_runs_on_resnet101_registered_with_its_points(method, monkeypatch) -> None:
    monkeypatch.setitem(BACKBONES, "resnet101", _resnet101())
    built = build_method(_method_configs()[method])
    if built.placements is not None and "resnet" not in built.placements:  # NL-CCAM: VGG only
        with pytest.raises(MethodError, match="not for 'resnet101'"):
            CAMNet("resnet101", 5, method=built)
        return
    with torch.device("meta"):
        net = CAMNet("resnet101", 5, head_num_convs=0, method=built)
    outputs = meta_forward(net, 224)
    assert outputs["logits"].shape == (2, 5)
    if method == "adl":  # ResNet's placement, at ResNet101's own last block
        assert _adl_follows(net) == ["trunk.layer3.0", "trunk.layer4.0", "trunk.layer4.2"]
    if method == "spg":
        assert list(net.method._tapped) == ["trunk.layer3.0", "trunk.layer3"]
        assert net.method_layers["b1"][0].in_channels == 1024
        assert outputs["b2"].shape[-2:] == (14, 14)
    if method == "bas":  # ResNet's layout at ResNet101's layer3: stride 1, then a 2x2 pool
        assert net.trunk.layer3[0].conv2.stride == (1, 1) and "bas_pool" in net.trunk._modules
        assert outputs["generator"].shape[-2:] == (28, 28) and outputs["features"].shape[-2:] == (14, 14)


@pytest.mark.parametrize("method", _cnn_methods())
def test_every_method_trains_a_step_on_a_test_defined_backbone(method, monkeypatch) -> None:
    monkeypatch.setitem(BACKBONES, "mini_vgg", MINI_VGG)
    torch.manual_seed(0)
    net = CAMNet("mini_vgg", 3, head_width=8, method=build_method(_method_configs()[method])).train()
    images = torch.randn(2, 3, 64, 64)
    batch = {"input": images, "image": images, "label": torch.tensor([0, 2]),
             "boxes": torch.tensor([[[4.0, 4.0, 40.0, 40.0]], [[10.0, 8.0, 60.0, 50.0]]]),
             "num_boxes": torch.tensor([1, 1])}
    batch = net.method.transform_batch(batch)
    outputs = net.method.forward(net, batch["input"], batch["label"])
    net.method.loss(net, outputs, batch).backward()
    assert outputs["logits"].shape == (2, 3)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.trunk.parameters())
    if method == "adl":  # VGG's placement by name: after pool3, stage 4 and stage 5
        assert _adl_follows(net) == ["trunk.body.down3", "trunk.body.act4", "trunk.body.act5"]
    if method == "acol":  # VGG's feature source: the four pools swapped, pool5 and smoothing
        assert [n for n, m in net.trunk.named_modules() if isinstance(m, nn.MaxPool2d) and m.kernel_size == 3] \
            == ["body.down1", "body.down2", "body.down3", "body.down4", "pool5"]
    if method == "spg":
        assert list(net.method._tapped) == ["trunk.body.down4", "trunk.body.act5"]
    if method == "bas":  # VGG's generator on stage 4's output, before the fourth pool
        assert net.method._point == "trunk.body.act4"
    if method == "nlccam":  # after pool2, pool3, pool4 and stage 5
        assert [n for n, m in net.trunk.named_modules() if m._forward_hooks] == \
            ["body.down2", "body.down3", "body.down4", "body.act5"]


def test_a_backbone_of_a_family_without_a_placement_is_refused_by_the_methods_that_need_one(monkeypatch):
    monkeypatch.setitem(BACKBONES, "mini", dataclasses.replace(MINI_VGG, name="mini", family="other"))
    for method in (ADL(), ACoL(), SPG()):
        with pytest.raises(MethodError, match=r"not for 'mini'"):
            CAMNet("mini", 3, method=method)
    assert CAMNet("mini", 3, method=CAM()).points()["pool4"] == Point("trunk.body.down4", 16)

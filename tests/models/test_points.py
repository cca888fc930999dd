"""Every backbone's named points are where their names say, with the channels they declare."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from camexp.models import BACKBONES, CAMNet
from camexp.models.backbones import Point

# the conv1..conv5 sense, by hand from torchvision's definitions (module type of each point)
EXPECTED = {
    "vgg16": {"stage1": ("trunk.features.3", "ReLU", 64), "pool3": ("trunk.features.16", "MaxPool2d", 256),
              "stage4": ("trunk.features.22", "ReLU", 512), "pool4": ("trunk.features.23", "MaxPool2d", 512),
              "stage5": ("trunk.features.29", "ReLU", 512), "output": ("trunk.features.29", "ReLU", 512)},
    "alexnet": {"stage1": ("trunk.features.1", "ReLU", 64), "pool2": ("trunk.features.5", "MaxPool2d", 192),
                "stage5": ("trunk.features.11", "ReLU", 256)},
    "resnet50": {"stage1": ("trunk.relu", "ReLU", 64), "pool1": ("trunk.maxpool", "MaxPool2d", 64),
                 "stage4": ("trunk.layer3", "Sequential", 1024),
                 "stage4.first": ("trunk.layer3.0", "Bottleneck", 1024),
                 "stage5.last": ("trunk.layer4.2", "Bottleneck", 2048),
                 "output": ("trunk.layer4", "Sequential", 2048)},
    "resnet18": {"stage2": ("trunk.layer1", "Sequential", 64), "stage5.last": ("trunk.layer4.1", "BasicBlock", 512)},
    "inception_v3": {"stage1": ("trunk.Conv2d_2b_3x3", "BasicConv2d", 64),
                     "stage3": ("trunk.Mixed_5d", "InceptionA", 288),
                     "stage4.block4": ("trunk.Mixed_6d", "InceptionC", 768),
                     "stage4": ("trunk.Mixed_6e", "InceptionC", 768)},
    "googlenet": {"stage2": ("trunk.conv3", "BasicConv2d", 192), "pool3": ("trunk.maxpool3", "MaxPool2d", 480),
                  "stage4.first": ("trunk.inception4a", "Inception", 512)},
    "tiny": {"pool2": ("trunk.features.pool2", "MaxPool2d", 48), "stage3": ("trunk.features.relu3", "ReLU", 96),
             "stage4": ("trunk.features.relu4", "ReLU", 128)},
}

# the CNN trunks (the transformers have their own network and tests: test_vit.py)
CNN_BACKBONES = sorted(arch for arch, spec in BACKBONES.items() if spec.family != "vit")


def _output_channels(net: CAMNet, paths: list[str], size: int) -> dict[str, int]:
    """The channels of each module's output in a forward pass on the meta device."""
    modules = dict(net.named_modules())
    seen: dict[str, int] = {}
    for path in paths:
        modules[path].register_forward_hook(lambda _m, _i, out, path=path: seen.update({path: out.shape[1]}))
    net.to("meta")(torch.empty(1, 3, size, size, device="meta"))
    return seen


@pytest.mark.parametrize("arch", CNN_BACKBONES)
def test_every_declared_point_is_a_module_with_the_declared_channels(arch: str) -> None:
    with torch.device("meta"):
        net = CAMNet(arch, 3, head_width=8)
    points = net.points()
    spec = BACKBONES[arch]
    assert points["output"].channels == spec.out_channels
    assert points["head.last"] == Point("head.relu1", 8)
    stages = sorted(name for name in points if name.startswith("stage") and "." not in name)
    assert stages == [f"stage{k}" for k in range(1, len(stages) + 1)]  # numbered from 1, no gap
    channels = _output_channels(net, sorted({p.path for p in points.values()}), 299 if arch == "inception_v3" else 224)
    assert {name: channels[p.path] for name, p in points.items()} == {n: p.channels for n, p in points.items()}
    modules = dict(net.named_modules())
    for name, (path, kind, width) in EXPECTED[arch].items():
        assert (points[name].path, type(modules[path]).__name__, points[name].channels) == (path, kind, width)


def test_the_stages_end_where_the_resolution_halves() -> None:
    """conv1..conv5 sense: the uncut VGG16 halves its resolution right after each stage."""
    net = CAMNet("vgg16", 3, head_width=8).eval()
    points = net.points()
    sizes = {}
    for k in range(1, 6):
        module = dict(net.named_modules())[points[f"stage{k}"].path]
        module.register_forward_hook(lambda _m, _i, out, k=k: sizes.update({k: out.shape[-1]}))
    with torch.no_grad():
        net(torch.zeros(1, 3, 64, 64))
    assert sizes == {1: 64, 2: 32, 3: 16, 4: 8, 5: 4}


def test_head_last_is_absent_without_head_and_follows_the_head_width() -> None:
    with torch.device("meta"):
        assert "head.last" not in CAMNet("resnet18", 3, head_num_convs=0).points()
        assert CAMNet("tiny", 3, head_num_convs=3, head_width=5).points()["head.last"] == Point("head.relu3", 5)


def test_a_point_declared_at_a_missing_module_is_refused_when_the_network_is_built(monkeypatch) -> None:
    spec = BACKBONES["tiny"]
    wrong = dataclasses.replace(spec, points={**spec.points, "stage5": Point("features.relu5", 128)})
    monkeypatch.setitem(BACKBONES, "tiny", wrong)
    with pytest.raises(ValueError, match=r"declares point 'stage5' at 'features.relu5', which its trunk does not have"):
        CAMNet("tiny", 3)

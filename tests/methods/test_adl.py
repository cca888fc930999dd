"""ADL (docs/methods.md): importance map sigmoid(a), drop mask 1[a < gamma max a], one choice per
layer and forward for the whole batch, identity in eval, three layers at the stated places."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from camexp.core.errors import MethodError
from camexp.methods.adl import ADL, ADLLayer, adl_maps
from camexp.methods.cam import CAM
from camexp.models import CAMNet


def _hand_features() -> torch.Tensor:
    # two channels whose mean a is, per image:
    #   image 0: [[8, 4], [3.5, 0]] (max 8, gamma 0.5 -> 4: the mask is 0 at 8 and at 4, 1 below)
    #   image 1: [[1, 2], [2, 0.5]] (max 2 -> 1: the mask is 0 at 2, 2 and 1, 1 at 0.5 only)
    mean = torch.tensor([[[8.0, 4.0], [3.5, 0.0]], [[1.0, 2.0], [2.0, 0.5]]])
    offset = torch.tensor([[[2.0, -1.0], [0.5, 3.0]], [[0.25, 1.0], [-2.0, 0.5]]])
    return torch.stack([mean + offset, mean - offset], dim=1)  # (2, 2, 2, 2)


def test_adl_maps_by_hand():
    importance, drop = adl_maps(_hand_features(), threshold=0.5)
    a = torch.tensor([[[8.0, 4.0], [3.5, 0.0]], [[1.0, 2.0], [2.0, 0.5]]])[:, None]
    assert importance.shape == drop.shape == (2, 1, 2, 2)
    assert torch.allclose(importance, 1 / (1 + torch.exp(-a)))
    assert torch.equal(drop, torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 1.0]]]]))
    # the maximum is taken per image: image 1's 1.0 is dropped by its own maximum 2, not by 8
    _, drop_1 = adl_maps(_hand_features()[1:], threshold=0.5)
    assert torch.equal(drop_1, drop[1:])


def test_adl_layer_multiplies_by_the_chosen_map():
    x = _hand_features()
    importance, drop = adl_maps(x, threshold=0.5)
    for rate, chosen in ((1.0, drop), (0.0, importance)):
        method = ADL(drop_rate=rate, threshold=0.5)
        layer = ADLLayer(method).train()
        assert torch.allclose(layer(x), x * chosen)
    assert not torch.allclose(x * drop, x * importance)


def test_adl_layer_chooses_once_per_forward_for_the_whole_batch_at_the_drop_rate():
    x = _hand_features()
    importance, drop = adl_maps(x, threshold=0.5)
    method = ADL(drop_rate=0.75, threshold=0.5)
    method.rng = np.random.default_rng(2)
    layer = ADLLayer(method).train()
    replay = np.random.default_rng(2)
    drops, forwards = 0, 2000
    for _ in range(forwards):
        out = layer(x)
        uses_drop = replay.random() < 0.75  # one draw per forward, as the layer does
        per_image = [bool(torch.allclose(out[i], (x * drop)[i])) for i in range(2)]
        assert per_image == [uses_drop, uses_drop]  # both images got the same map
        if not uses_drop:
            assert torch.allclose(out, x * importance)
        drops += uses_drop
    assert abs(drops / forwards - 0.75) < 4 * math.sqrt(0.75 * 0.25 / forwards)


def _tiny(method, seed: int = 0) -> CAMNet:
    torch.manual_seed(seed)
    return CAMNet("tiny", 3, head_width=8, method=method)


def test_adl_is_the_identity_in_eval_mode_and_draws_once_per_layer_in_training():
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    adl_net = _tiny(ADL(drop_rate=1.0))
    cam_net = _tiny(CAM())
    cam_net.load_state_dict(adl_net.state_dict())  # same keys: ADL adds no parameter
    adl_net.eval(), cam_net.eval()
    assert all(not m.training for m in adl_net.modules() if isinstance(m, ADLLayer))
    assert torch.equal(adl_net(images), cam_net(images))
    adl_net.train(), cam_net.train()
    adl_net.method.rng = np.random.default_rng(4)
    assert not torch.allclose(adl_net(images), cam_net(images))
    replay = np.random.default_rng(4)
    replay.random(3)  # three layers, one draw each
    assert adl_net.method.rng.random() == replay.random()


def _follows(net: nn.Module) -> list[tuple[str, str, type]]:
    """(ADL name, path and class name of the module right before it) for each ADL layer."""
    found = []
    for parent_name, parent in net.named_modules():
        children = list(parent.named_children())
        for index, (name, child) in enumerate(children):
            if isinstance(child, ADLLayer):
                before_name, before = children[index - 1]
                found.append((name, f"{parent_name}.{before_name}", type(before).__name__))
    return found


@pytest.mark.usefixtures("fast_vgg16")
@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("tiny", [("adl1", "trunk.features.pool2", "MaxPool2d"), ("adl2", "trunk.features.relu3", "ReLU"),
                  ("adl3", "trunk.features.relu4", "ReLU")]),
        ("vgg16", [("adl1", "trunk.features.16", "MaxPool2d"), ("adl2", "trunk.features.22", "ReLU"),
                   ("adl3", "trunk.features.29", "ReLU")]),
        ("resnet18", [("adl1", "trunk.layer3.0", "BasicBlock"), ("adl2", "trunk.layer4.0", "BasicBlock"),
                      ("adl3", "trunk.layer4.1", "BasicBlock")]),
        ("resnet50", [("adl1", "trunk.layer3.0", "Bottleneck"), ("adl2", "trunk.layer4.0", "Bottleneck"),
                      ("adl3", "trunk.layer4.2", "Bottleneck")]),
        ("inception_v3", [("adl1", "trunk.Mixed_5d", "InceptionA"), ("adl2", "trunk.Mixed_6e", "InceptionC"),
                          ("adl3", "head.relu2", "ReLU")]),
    ],
)
def test_adl_layers_sit_at_the_documented_places(arch, expected):
    head = {"resnet50": 0, "resnet18": 0, "inception_v3": 2}.get(arch, 1)
    net = CAMNet(arch, 4, head_num_convs=head, head_width=16, method=ADL())
    assert _follows(net) == expected
    layers = [m for m in net.modules() if isinstance(m, ADLLayer)]
    assert len(layers) == 3 and all(layer.method is net.method for layer in layers)
    if arch == "vgg16":  # pool3 is followed by conv4_1, conv5_3's ReLU by the head
        children = list(net.trunk.features._modules)
        assert children[children.index("adl1") + 1] == "17"
        assert isinstance(net.trunk.features[children.index("adl1") + 1], nn.Conv2d)
        assert net.trunk.features[children.index("adl1") + 1].in_channels == 256
        assert children[-1] == "adl3" and children[children.index("adl2") + 1] == "23"
    if arch == "inception_v3":  # the third layer is the last one before the classifier
        assert list(net.head._modules)[-1] == "adl3"


@pytest.mark.parametrize("arch", ["googlenet", "alexnet"])
def test_unsupported_backbones_raise_a_method_error_naming_the_supported_ones(arch):
    with pytest.raises(MethodError) as info:
        CAMNet(arch, 4, method=ADL())
    message = str(info.value)
    assert f"not for {arch!r}" in message and "method=adl" in message
    assert "['inception_v3', 'resnet18', 'resnet50', 'tiny', 'vgg16']" in message


@pytest.mark.parametrize(("kwargs", "key"), [({"drop_rate": 1.2}, "method.drop_rate"),
                                             ({"threshold": -0.1}, "method.threshold")])
def test_bad_settings_raise_method_error(kwargs, key):
    with pytest.raises(MethodError, match=key.replace(".", r"\.")):
        ADL(**kwargs)


def test_inception_without_head_convs_raises_a_method_error_not_an_index_error():
    with pytest.raises(MethodError, match=r"model\.head\.num_convs=0 leaves no head"):
        CAMNet("inception_v3", 4, head_num_convs=0, method=ADL())

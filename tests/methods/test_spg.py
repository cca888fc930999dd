"""SPG (docs/methods.md): seed masks (foreground, background, ignored), the BCE over the batch's
non-ignored pixels, the layers the branches tap, the branches' absence at inference, the map."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camexp.core.errors import MethodError
from camexp.methods.spg import IGNORE, SPG, seed_loss, seed_mask
from camexp.models import CAMNet
from tests.helpers.models import meta_forward

X = IGNORE


def test_seed_mask_by_hand_with_the_per_image_fallback():
    maps = torch.tensor([
        [[0.9, 0.8, 0.7, 0.05], [0.5, 0.3, 0.65, 0.0], [0.1, 0.2, 0.09, 0.4], [0.6, 0.61, 0.3, 0.02]],
        # no pixel > 0.6: the high threshold becomes 0.7 x 0.5 = 0.35 for this image only
        [[0.5, 0.4, 0.36, 0.35], [0.2, 0.1, 0.05, 0.3], [0.0, 0.38, 0.12, 0.34], [0.45, 0.2, 0.08, 0.1]],
    ])[:, None]
    mask = seed_mask(maps, high=0.6, low=0.1, min_foreground=3)
    expected = torch.tensor([
        [[1, 1, 1, 0], [X, X, 1, 0], [X, X, 0, X], [X, 1, X, 0]],
        [[1, 1, 1, X], [X, X, 0, X], [0, 1, X, X], [1, X, 0, X]],
    ], dtype=torch.uint8)[:, None]
    assert mask.dtype == torch.uint8 and torch.equal(mask, expected)
    # with min_foreground 5 image 0 (5 pixels > 0.6) keeps 0.6; with 6 it falls back to 0.63
    assert torch.equal(seed_mask(maps, 0.6, 0.1, 5)[0], expected[0])
    fallback = seed_mask(maps, 0.6, 0.1, 6)[0, 0]
    assert fallback[0].tolist() == [1, 1, 1, 0] and fallback[1, 2].item() == 1 and fallback[3, 1].item() == X


def test_background_overrides_foreground():
    maps = torch.tensor([[0.2, 0.4, 0.6, 0.8]]).reshape(1, 1, 2, 2)
    # high 0.3 < low 0.5: 0.4 is both; background wins
    assert seed_mask(maps, high=0.3, low=0.5, min_foreground=1).flatten().tolist() == [0, 0, 1, 1]
    # the fallback's foreground is overridden too: max 0.12 -> 0.084; 0.09 < low 0.1 -> 0
    small = torch.tensor([[0.0, 0.09, 0.12, 0.05]]).reshape(1, 1, 2, 2)
    assert seed_mask(small, high=0.7, low=0.1, min_foreground=30).flatten().tolist() == [0, 0, 1, 0]


def _hand_bce(logits: torch.Tensor, targets: torch.Tensor) -> float:
    x, t = logits.double(), targets.double()
    return float(-(t * torch.log(torch.sigmoid(x)) + (1 - t) * torch.log(1 - torch.sigmoid(x))).mean())


def test_seed_loss_averages_over_the_non_ignored_pixels_of_the_whole_batch():
    logits = torch.tensor([[[[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]]], [[[1.5, -0.5, 4.0], [-3.0, 0.2, 1.0]]]])
    mask = torch.tensor([[[[1, 0, 1], [X, 0, 1]]], [[[X, X, 0], [X, X, X]]]], dtype=torch.uint8)
    valid = mask != X
    loss = seed_loss(logits, mask)
    assert loss.item() == pytest.approx(_hand_bce(logits[valid], mask[valid]), rel=1e-6)
    # pooled over the batch (6 pixels), not a mean of the two images' means
    per_image = (_hand_bce(logits[0][valid[0]], mask[0][valid[0]]) + _hand_bce(logits[1][valid[1]], mask[1][valid[1]])) / 2
    assert abs(loss.item() - per_image) > 1e-3


def test_seed_loss_is_zero_when_every_pixel_is_ignored():
    logits = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = seed_loss(logits, torch.full((2, 1, 3, 3), X, dtype=torch.uint8))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(2, 1, 3, 3))


# (arch, head convs and width, B1 tap and module, B2 tap and module, channels, branch widths, map side at 224)
LAYOUTS = [
    ("vgg16", (2, 512), ("trunk.features.23", "MaxPool2d"), ("trunk.features.29", "ReLU"), (512, 512), (512, 512), 14),
    ("resnet50", (0, None), ("trunk.layer3.0", "Bottleneck"), ("trunk.layer3", "Sequential"), (1024, 1024),
     (1024, 512), 14),
    ("resnet18", (0, None), ("trunk.layer3.0", "BasicBlock"), ("trunk.layer3", "Sequential"), (256, 256), (256, 256), 14),
    ("inception_v3", (2, 1024), ("trunk.Mixed_5d", "InceptionA"), ("trunk.Mixed_6d", "InceptionC"), (288, 768),
     (512, 512), 25),
    ("tiny", (2, 32), ("trunk.features.relu3", "ReLU"), ("trunk.features.relu4", "ReLU"), (96, 128), (64, 64), 28),
]


def _module(net: nn.Module, path: str) -> nn.Module:
    return dict(net.named_modules())[path]


@pytest.mark.usefixtures("fast_vgg16")
@pytest.mark.parametrize(("arch", "head", "b1", "b2", "channels", "widths", "side"), LAYOUTS)
def test_spg_taps_the_documented_layers_with_the_documented_channels(arch, head, b1, b2, channels, widths, side):
    net = CAMNet(arch, 6, head_width=32, method=SPG()).train()
    convs = [m for m in net.head if isinstance(m, nn.Conv2d)]
    assert len(convs) == head[0] and all(c.out_channels == (head[1] or 32) for c in convs)
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [type(_module(net, b1[0])).__name__, type(_module(net, b2[0])).__name__] == [b1[1], b2[1]]
    if arch == "vgg16":  # pool4 became 3x3 stride 2 pad 1
        pool4 = _module(net, "trunk.features.23")
        assert (pool4.kernel_size, pool4.stride, pool4.padding) == (3, 2, 1)
    branch = net.method_layers
    width, c_width = widths
    assert (branch["b1"][0].in_channels, branch["b2"][0].in_channels) == channels
    assert branch["b1"][0].out_channels == branch["b2"][0].out_channels == width
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in branch["b_shared"] if isinstance(m, nn.Conv2d)] \
        == [(width, width, (3, 3)), (width, 1, (1, 1))]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in branch["c"] if isinstance(m, nn.Conv2d)] \
        == [(net.classifier.in_features, c_width, (3, 3)), (c_width, 1, (1, 1))]
    outputs = meta_forward(net, 224)
    taps = net.method._taps.outputs
    assert sorted(taps) == sorted([b1[0], b2[0]])
    assert (taps[b1[0]].shape[1], taps[b2[0]].shape[1]) == channels
    assert taps[b2[0]].shape[-2:] == (side, side)
    for key in ("b1", "b2", "c"):
        assert outputs[key].shape[:2] == (2, 1)


def _tiny_spg() -> CAMNet:
    torch.manual_seed(0)
    return CAMNet("tiny", 4, head_width=8, method=SPG())


def test_branches_run_in_training_only_and_the_map_is_the_cam_of_the_class():
    net = _tiny_spg()
    calls = []
    for name, module in net.method_layers.items():
        module.register_forward_hook(lambda *_, name=name: calls.append(name))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net.eval()
    with torch.no_grad():
        outputs = net.method.forward(net, images, torch.tensor([0, 2]))
        assert sorted(outputs) == ["features", "logits"] and calls == []
        classes = torch.tensor([[0, 3], [2, 1]])
        maps = net.method.maps(net, outputs, classes)
    features, weights = outputs["features"], net.classifier.weight
    for i in range(2):
        for k in range(2):
            expected = (weights[classes[i, k]][:, None, None] * features[i]).sum(0)
            assert torch.allclose(maps[i, k], expected, atol=1e-6)
    net.train()
    outputs = net.method.forward(net, images, torch.tensor([0, 2]))
    assert sorted(calls) == ["b1", "b2", "b_shared", "b_shared", "c"]
    assert outputs["b1"].shape == (2, 1, 8, 8) and outputs["b2"].shape == (2, 1, 4, 4)
    assert outputs["c"].shape == (2, 1, 4, 4)


def test_loss_is_ce_plus_the_three_seed_losses_on_upsampled_maps():
    net = _tiny_spg().train()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([1, 3])
    outputs = net.method.forward(net, images, labels)
    loss = net.method.loss(net, outputs, {"input": images, "label": labels})

    def up(m):
        return F.interpolate(m, size=(32, 32), mode="bilinear", align_corners=False)

    cam = (net.classifier.weight[labels][:, :, None, None] * outputs["features"]).sum(1, keepdim=True)
    cam = up(cam)
    low, high = cam.amin((2, 3), keepdim=True), cam.amax((2, 3), keepdim=True)
    attention = (cam - low) / (high - low)
    b1, b2, c = up(outputs["b1"]), up(outputs["b2"]), up(outputs["c"])
    s1, s2 = torch.sigmoid(b1), torch.sigmoid(b2)
    terms = [
        -(outputs["logits"].log_softmax(1)[torch.arange(2), labels]).mean().item(),
        seed_loss(b2, seed_mask(attention, 0.7, 0.01)).item(),
        seed_loss(b1, seed_mask(s2, 0.5, 0.05)).item(),
        seed_loss(c, seed_mask((s1 + s2) / 2, 0.7, 0.1)).item(),
    ]
    assert all(t > 0 for t in terms)
    assert loss.item() == pytest.approx(sum(terms), rel=1e-5)
    loss.backward()  # every branch is trained by the loss
    assert all(p.grad is not None for p in net.method_layers.parameters())


@pytest.mark.parametrize("arch", ["googlenet", "alexnet"])
def test_unsupported_backbones_raise_a_method_error(arch):
    with pytest.raises(MethodError, match="method=spg"):
        CAMNet(arch, 4, method=SPG())


def test_bad_threshold_raises_method_error():
    with pytest.raises(MethodError, match=r"method\.threshold_2l"):
        SPG(threshold_2l=1.5)

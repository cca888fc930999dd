"""ACoL (docs/methods.md): erasing where A's normalized map >= delta, B on the erased features,
loss CE(A) + CE(B), the map max(norm A, norm B), VGG16's feature source."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camexp.core.errors import MethodError
from camexp.methods.acol import ACoL, erase, fuse
from tests.helpers.models import meta_forward


def _hand_norm(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.reshape(-1, *maps.shape[-2:])
    out = torch.zeros_like(flat)
    for index, m in enumerate(flat):
        span = m.max() - m.min()
        if span > 0:
            out[index] = (m - m.min()) / span
    return out.reshape(maps.shape)


def test_erase_zeroes_every_channel_where_the_normalized_map_reaches_the_threshold():
    # image 0: values 0..8 -> normalized k/8; image 1: constant -> all 0 -> nothing erased
    class_map = torch.stack([torch.arange(9.0).reshape(3, 3) * 3 - 5, torch.full((3, 3), 2.0)])
    features = torch.rand(2, 4, 3, 3) + 1
    out = erase(features, class_map, threshold=0.5)
    erased = torch.tensor([[0, 0, 0], [0, 1, 1], [1, 1, 1]], dtype=torch.bool)  # k/8 >= 0.5: k >= 4
    assert torch.equal(out[0][:, erased], torch.zeros(4, 5))
    assert torch.equal(out[0][:, ~erased], features[0][:, ~erased])
    assert torch.equal(out[1], features[1])
    assert torch.equal(erase(features, class_map, threshold=1.0)[0][:, 2, 2], torch.zeros(4))  # the peak


def test_fuse_is_the_elementwise_max_of_the_normalized_maps():
    maps_a = torch.tensor([[[[0.0, 2.0], [4.0, 1.0]]]])  # normalized: 0, .5, 1, .25
    maps_b = torch.tensor([[[[-3.0, 5.0], [1.0, 3.0]]]])  # normalized: 0, 1, .5, .75
    assert torch.equal(fuse(maps_a, maps_b), torch.tensor([[[[0.0, 1.0], [1.0, 0.75]]]]))
    maps = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    assert torch.allclose(fuse(*maps), torch.maximum(_hand_norm(maps[0]), _hand_norm(maps[1])), atol=1e-6)


def _tiny_acol(threshold: float = 0.5):
    from camexp.models import CAMNet

    torch.manual_seed(0)
    net = CAMNet("tiny", 4, head_width=8, method=ACoL(threshold=threshold)).eval()
    # spread A's classes apart so that different classes have different maps
    with torch.no_grad():
        net.classifier.weight.copy_(torch.randn(4, 8))
    return net


def _b_by_hand(net, trunk, features, target, threshold):
    cam = (net.classifier.weight[target][:, :, None, None] * features).sum(1)
    keep = (_hand_norm(cam) < threshold).float()[:, None]
    return net.method_layers["head_b"](trunk * keep)


def test_forward_erases_by_the_label_when_given_else_by_as_argmax():
    net = _tiny_acol()
    images = torch.randn(3, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        trunk = net.trunk(images)
        features = net.head(trunk)
        logits = net.classify(features)
        predicted = logits.argmax(1)
        labels = (predicted + 1) % 4  # never A's prediction
        with_labels = net.method.forward(net, images, labels)
        without = net.method.forward(net, images, None)
        by_label = _b_by_hand(net, trunk, features, labels, 0.5)
        by_prediction = _b_by_hand(net, trunk, features, predicted, 0.5)
    assert not torch.allclose(by_label, by_prediction)
    assert torch.allclose(with_labels["features_b"], by_label, atol=1e-6)
    assert torch.allclose(without["features_b"], by_prediction, atol=1e-6)
    # predictions are A's; B classifies its own pooled features
    assert torch.allclose(with_labels["logits"], logits) and torch.allclose(with_labels["features"], features)
    b = net.method_layers["classifier_b"]
    assert torch.allclose(with_labels["logits_b"], by_label.mean((2, 3)) @ b.weight.T + b.bias, atol=1e-6)


def test_maps_fuse_a_and_b_class_maps_and_loss_is_the_sum_of_both_ces():
    net = _tiny_acol()
    images = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([1, 3])
    with torch.no_grad():
        outputs = net.method.forward(net, images, labels)
        classes = torch.tensor([[1, 0], [3, 2]])
        maps = net.method.maps(net, outputs, classes)
    wa, wb = net.classifier.weight, net.method_layers["classifier_b"].weight
    for i in range(2):
        for k in range(2):
            c = classes[i, k]
            map_a = (wa[c][:, None, None] * outputs["features"][i]).sum(0)
            map_b = (wb[c][:, None, None] * outputs["features_b"][i]).sum(0)
            expected = torch.maximum(_hand_norm(map_a), _hand_norm(map_b))
            assert torch.allclose(maps[i, k], expected, atol=1e-5)
    loss = net.method.loss(net, outputs, {"label": labels})

    def ce(logits):
        return -(logits.log_softmax(1)[torch.arange(2), labels]).mean()

    assert loss.item() == pytest.approx((ce(outputs["logits"]) + ce(outputs["logits_b"])).item(), rel=1e-6)


def test_classifier_b_is_a_copy_of_as_shape_beside_the_network():
    net = _tiny_acol()
    head_a, head_b = net.head, net.method_layers["head_b"]
    assert [type(m).__name__ for m in head_a] == ["Conv2d", "ReLU", "Conv2d", "ReLU"]  # two 3x3 convs
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in head_b if isinstance(m, nn.Conv2d)] == \
        [(m.in_channels, m.out_channels, m.kernel_size) for m in head_a if isinstance(m, nn.Conv2d)] == \
        [(128, 8, (3, 3)), (8, 8, (3, 3))]
    assert net.method_layers["classifier_b"].weight.shape == net.classifier.weight.shape == (4, 8)
    assert not any(p is q for p in net.method_layers.parameters() for q in net.head.parameters())


@pytest.mark.usefixtures("fast_vgg16")
def test_vgg16_feature_source_pools_and_14x14_map():
    from camexp.models import CAMNet

    net = CAMNet("vgg16", 5, head_width=16, method=ACoL())
    features = net.trunk.features
    for index in ("4", "9", "16", "23"):
        pool = features._modules[index]
        assert isinstance(pool, nn.MaxPool2d)
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert not any(isinstance(m, nn.MaxPool2d) and m.kernel_size == 2 for m in net.modules())
    assert list(net.trunk._modules) == ["features", "pool5", "smooth"]
    assert len(features) == 30  # up to conv5_3's ReLU; pool5 is the new 3x3 stride-1 one
    pool5, smooth = net.trunk.pool5, net.trunk.smooth
    assert isinstance(pool5, nn.MaxPool2d) and (pool5.kernel_size, pool5.stride, pool5.padding) == (3, 1, 1)
    assert isinstance(smooth, nn.AvgPool2d) and (smooth.kernel_size, smooth.stride, smooth.padding) == (3, 1, 1)
    # the smoothing is a 3x3 mean with zero padding counted (the field's nn.AvgPool2d defaults)
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert smooth(x)[0, 0, 1, 1].item() == pytest.approx(4.0)
    assert smooth(x)[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 3 + 4) / 9)
    outputs = meta_forward(net, 224)
    assert outputs["features"].shape == (2, 16, 14, 14) and outputs["features_b"].shape == (2, 16, 14, 14)
    assert outputs["logits"].shape == outputs["logits_b"].shape == (2, 5)


@pytest.mark.parametrize("threshold", [1.5, -0.2])
def test_bad_threshold_raises_method_error(threshold):
    with pytest.raises(MethodError, match=r"method\.threshold"):
        ACoL(threshold=threshold)


@pytest.mark.parametrize(("arch", "channels"), [("resnet18", 512), ("resnet50", 2048), ("tiny", 128)])
def test_other_backbones_feed_their_trunk_output_unsmoothed_to_both_classifiers(arch, channels):
    from camexp.models import CAMNet

    plain, acol = CAMNet(arch, 3, head_width=8), CAMNet(arch, 3, head_width=8, method=ACoL())
    assert list(acol.trunk._modules) == list(plain.trunk._modules)  # no pool5, no smoothing
    assert repr(acol.trunk) == repr(plain.trunk)
    assert acol.head.conv1.in_channels == acol.method_layers["head_b"].conv1.in_channels == channels

"""NL-CCAM (docs/methods.md, "NL-CCAM"): the non-local block starts as the identity, the
network's layout, and the combinational map's weights by rank of predicted score."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from camexp.methods import MethodError
from camexp.methods.nlccam import NLCCAM, NonLocalBlock, class_weights, rank_weights, split_rank
from camexp.models import CAMNet
from camexp.models.weights import load_trunk_state


@pytest.mark.parametrize("training", [True, False])
def test_the_non_local_block_is_the_identity_at_initialization(training: bool) -> None:
    torch.manual_seed(0)
    block = NonLocalBlock(16).train(training)
    x = torch.randn(2, 16, 5, 6)
    assert torch.equal(block(x), x)
    assert block.query.out_channels == block.key.out_channels == 2  # C / 8
    with torch.no_grad():  # once the BatchNorm learns, the block adds the attended values
        block.norm.weight.fill_(1.0)
    assert not torch.allclose(block(x), x)


def test_the_attention_mixes_every_position_by_softmax_over_positions() -> None:
    torch.manual_seed(0)
    block = NonLocalBlock(8).eval()
    with torch.no_grad():
        block.norm.weight.fill_(1.0)
        block.norm.running_var.fill_(1.0 - block.norm.eps)  # BN is the identity in eval mode
        x = torch.randn(1, 8, 2, 3)
        q, k, v = (layer(x).flatten(2)[0] for layer in (block.query, block.key, block.value))
        weights = torch.softmax(q.T @ k, dim=1)  # (n, n), each row sums to 1
        mixed = (v @ weights.T).view(1, 8, 2, 3)
        torch.testing.assert_close(block(x), x + block.out(mixed))


def test_vgg_gets_leaky_relus_non_local_blocks_at_the_stated_points_and_no_head() -> None:
    method = NLCCAM()
    net = CAMNet("vgg16", 5, method=method)
    trunk = net.trunk.features
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    leaky = [m for m in trunk if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 13 and all(m.negative_slope == 0.2 for m in leaky)
    hooked = {name: len(module._forward_hooks) for name, module in trunk.named_children() if module._forward_hooks}
    assert hooked == {"9": 1, "16": 1, "23": 1, "29": 1}  # pool2, pool3, pool4, conv5_3
    channels = [block.value.in_channels for block in net.method_layers.values()]
    assert channels == [128, 256, 512, 512]
    assert len(net.head) == 0 and net.classifier.in_features == 512  # GAP + linear on conv5_3
    load_trunk_state(net.trunk, tvm.vgg16().state_dict(), "vgg16")  # names unchanged


def test_the_blocks_act_inside_the_trunk() -> None:
    torch.manual_seed(0)
    net = CAMNet("tiny", 4, method=NLCCAM()).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = net.features(images)
        for block in net.method_layers.values():
            block.norm.weight.fill_(1.0)
        after = net.features(images)
    assert not torch.allclose(before, after)


def test_the_split_point_and_the_weights_by_rank() -> None:
    assert (split_rank(1000, 100), split_rank(200, 100), split_rank(100, 100)) == (100, 100, 100)
    assert (split_rank(10, 100), split_rank(7, 100)) == (5, 4)  # fewer classes: the better half
    torch.testing.assert_close(rank_weights(6, 3), torch.tensor([1.0, 0.25, 0.0, -0.0, -0.25, -1.0]))
    weights = rank_weights(200, 100)
    assert weights[0] == 1 and weights[99] == 0 and weights[199] == -1
    assert weights[100] == 0 and weights[150] == pytest.approx(-(50 / 99) ** 2)
    assert (weights[:100] >= 0).all() and (weights[100:] <= 0).all()


def test_classes_get_the_weight_of_their_rank_by_predicted_score() -> None:
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0, 0.5, 1.0]])  # ranks: 1, 2, 5, 4, 0, 3
    weights = class_weights(logits, positive_ranks=100)  # 6 classes: the better 3 positive
    torch.testing.assert_close(weights, torch.tensor([[-0.25, 1.0, 0.25, -1.0, -0.0, 0.0]]))


def test_the_map_is_the_rank_weighted_sum_of_all_class_maps_for_every_class_asked() -> None:
    torch.manual_seed(0)
    method = NLCCAM(positive_ranks=2)
    net = CAMNet("tiny", 4, head_width=8, method=method).eval()
    with torch.no_grad():
        outputs = method.forward(net, torch.randn(2, 3, 32, 32), None)
        maps = method.maps(net, outputs, torch.tensor([[0, 1, 2], [3, 3, 0]]))
        every = net.cams(outputs["features"], torch.arange(4).expand(2, 4))
    weights = class_weights(outputs["logits"], 2)
    expected = (weights[:, :, None, None] * every).sum(1)
    assert maps.shape == (2, 3, *outputs["features"].shape[-2:])
    for k in range(3):
        torch.testing.assert_close(maps[:, k], expected)


def test_backbones_without_a_placement_and_bad_settings_are_refused() -> None:
    with pytest.raises(MethodError, match="method=nlccam defines its layer placements"):
        NLCCAM().check("resnet50")
    with pytest.raises(MethodError, match="method.positive_ranks=0 is not allowed for method=nlccam"):
        NLCCAM(positive_ranks=0)

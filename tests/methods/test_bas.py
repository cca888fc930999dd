"""BAS (docs/methods.md, "BAS"): the frozen copy of the rest of the network, where the
background term's gradient goes, the loss against its formula, the generator's placement and
the map at inference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision import models as tvm

from camexp.methods import MethodError
from camexp.methods.bas import BAS, bas_loss, pick
from camexp.models import CAMNet
from camexp.models.weights import load_trunk_state

CUB = {"area_weight": {"vgg": 0.7, "resnet": 1.2, "inception": 1.0, "tiny": 1.2},
       "s2_weight": {"vgg": 0.0, "resnet": 0.5, "inception": 0.5, "tiny": 0.5}}


def _net(arch: str = "tiny", classes: int = 5, **settings) -> tuple[BAS, CAMNet]:
    torch.manual_seed(0)
    method = BAS(**{**CUB, **settings})
    return method, CAMNet(arch, classes, head_width=16, method=method)


def test_the_frozen_copy_is_the_live_weights_at_every_step_and_gets_no_gradient(monkeypatch) -> None:
    method, net = _net()
    seen: list[dict[str, torch.Tensor]] = []
    real = torch.func.functional_call

    def spy(module, state, args, *rest, **kwargs):
        seen.append(state)
        return real(module, state, args, *rest, **kwargs)

    monkeypatch.setattr(torch.func, "functional_call", spy)
    rest = method._rest
    live = dict(rest.named_parameters())
    # the rest after conv3 (the generator's point): pool3, conv4, bn4, relu4, the head
    features = net.trunk.features
    assert list(rest) == [features.pool3, features.conv4, features.bn4, features.relu4, net.head]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    images, labels = torch.randn(4, 3, 56, 56), torch.tensor([0, 1, 2, 3])
    previous = None
    for _ in range(3):
        net.train()
        outputs = method.forward(net, images, labels)
        frozen = seen[-1]
        for name, value in live.items():  # the copy is this step's live weights, frozen
            assert torch.equal(frozen[name], value) and not frozen[name].requires_grad, name
        if previous is not None:  # and it follows the updates
            assert any(not torch.equal(previous[n], frozen[n]) for n in live)
        previous = {n: frozen[n].clone() for n in live}
        net.zero_grad()
        outputs["background"].sum().backward(retain_graph=True)
        assert all(p.grad is None or not p.grad.any() for p in live.values())
        assert net.classifier.weight.grad is None or not net.classifier.weight.grad.any()
        net.zero_grad()
        method.loss(net, outputs, {"label": labels}).backward()
        optimizer.step()
    assert len(seen) == 3


def test_the_background_pass_leaves_the_live_batch_norm_statistics_alone() -> None:
    images, labels = torch.randn(4, 3, 56, 56), torch.tensor([0, 1, 2, 3])
    method, net = _net()
    _, plain = _net()  # the same network, run without the background pass
    net.train()
    plain.train()
    method.forward(net, images, labels)
    plain.features(images)
    statistics = [key for key in net.state_dict() if "running" in key or "num_batches" in key]
    assert statistics
    for key in statistics:
        assert torch.equal(net.state_dict()[key], plain.state_dict()[key]), key


def test_only_the_generator_gets_gradient_from_the_background_term() -> None:
    method, net = _net("resnet18")
    net.train()
    outputs = method.forward(net, torch.randn(2, 3, 64, 64), torch.tensor([1, 4]))
    outputs["background"].gather(1, torch.tensor([[1], [4]])).sum().backward()
    generator = net.method_layers["generator"][0]
    assert generator.weight.grad is not None and generator.weight.grad.abs().sum() > 0
    rest = {id(p) for p in method._rest.parameters()} | {id(p) for p in net.classifier.parameters()}
    assert rest and all(p.grad is None for p in net.parameters() if id(p) in rest)
    # layer4 and the head are the rest; layer3 and below feed the generator (through its input)
    assert net.trunk.layer4[0].conv1.weight.grad is None and net.head.conv1.weight.grad is None


def test_the_ratio_is_zero_where_the_background_is_not_below_and_its_denominator_is_detached() -> None:
    background = torch.tensor([1.0, 3.0, 2.5], requires_grad=True)
    foreground = torch.tensor([2.0, 3.0, 1.0], requires_grad=True)
    mask = torch.zeros(3, 1, 2, 2)
    loss = bas_loss(background, foreground, mask, area_weight=1.0)
    assert loss.item() == pytest.approx(0.5 / 3)
    loss.backward()
    assert background.grad.tolist() == pytest.approx([1 / 2 / 3, 0.0, 0.0])
    assert foreground.grad is None  # the denominator carries no gradient


def test_the_loss_on_hand_made_scores_equals_the_formula() -> None:
    method, net = _net("resnet18", classes=3, area_weight=2.0, s2_weight=0.25)
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.2, 0.4, 3.0]])
    masked = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    background = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 4.0]])  # image 2: not below, ratio 0
    mask = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    labels = torch.tensor([0, 2])
    outputs = {"logits": logits, "logits_masked": masked, "background": background, "mask": mask}

    def ce(row: list[float], label: int) -> float:
        return -row[label] + math.log(sum(math.exp(v) for v in row))

    cross = (ce([2.0, 1.0, 0.5], 0) + ce([0.2, 0.4, 3.0], 2)) / 2
    cross2 = (ce([1.0, 0.0, 0.0], 0) + ce([0.0, 0.0, 1.0], 2)) / 2
    ratio = (1.0 / (2.0 + 1e-8) + 0.0) / 2
    area = 2.0 * (0.5 + 0.25) / 2
    expected = cross + 0.25 * cross2 + ratio + area
    assert method.loss(net, outputs, {"label": labels}).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("arch, size, generator, features", [
    ("tiny", 56, 14, 7),        # conv3 (stride 4), the scores at stride 8
    ("resnet18", 64, 8, 4),     # layer3 at stride 1 (stride 8), a 2x2 pool, layer4 at stride 16
    ("vgg16", 64, 8, 4),        # conv4_3 (stride 8), pool4 and conv5 (stride 16)
])
def test_the_generator_sits_at_twice_the_resolution_of_the_scores(arch, size, generator, features) -> None:
    method, net = _net(arch)
    net.eval()
    with torch.no_grad():
        outputs = method.forward(net, torch.randn(1, 3, size, size), None)
    assert outputs["generator"].shape == (1, 5, generator, generator)
    assert outputs["features"].shape[-1] == features
    assert outputs["generator"].min() >= 0 and outputs["generator"].max() <= 1  # a sigmoid


def test_torchvision_weights_load_into_the_edited_trunk() -> None:
    _, net = _net("resnet18")
    assert "bas_pool" in net.trunk._modules and net.trunk.layer3[0].conv1.stride == (1, 1)
    load_trunk_state(net.trunk, tvm.resnet18().state_dict(), "resnet18")


def test_the_map_is_the_class_generator_map_or_the_mean_over_the_best_classes() -> None:
    generator = torch.rand(2, 4, 3, 3)
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.0], [3.0, 2.0, 1.0, 0.0]])
    classes = torch.tensor([[3, 1], [0, 2]])
    own, net = _net(classes=4, map_top_k=0)
    torch.testing.assert_close(own.maps(net, {"generator": generator, "logits": logits}, classes),
                               torch.stack([generator[0, [3, 1]], generator[1, [0, 2]]]))
    fused, net = _net(classes=4, map_top_k=2)
    maps = fused.maps(net, {"generator": generator, "logits": logits}, classes)
    expected = torch.stack([generator[0, [1, 2]].mean(0), generator[1, [0, 1]].mean(0)])
    assert maps.shape == (2, 2, 3, 3)
    torch.testing.assert_close(maps[:, 0], expected)
    torch.testing.assert_close(maps[:, 1], expected)
    everything, net = _net(classes=4, map_top_k=200)  # more than the classes: all of them
    torch.testing.assert_close(everything.maps(net, {"generator": generator, "logits": logits}, classes)[:, 0],
                               generator.mean(1))
    assert pick(generator, torch.tensor([2, 0])).shape == (2, 1, 3, 3)


def test_settings_per_family_and_their_refusals() -> None:
    assert BAS(area_weight=0.3).setting("area_weight", "vgg16") == 0.3
    method = BAS(**CUB)
    assert (method.setting("area_weight", "vgg16"), method.setting("area_weight", "resnet50")) == (0.7, 1.2)
    assert method.setting("s2_weight", "inception_v3") == 0.5
    with pytest.raises(MethodError, match=r"method.area_weight gives values for the backbone families \['vgg'\], "
                                          r"not for 'resnet' \(model.arch='resnet50'\)"):
        BAS(area_weight={"vgg": 0.7}).check("resnet50")
    with pytest.raises(MethodError, match=r"method.area_weight.vgg=-1 is not allowed for method=bas"):
        BAS(area_weight={"vgg": -1})
    with pytest.raises(MethodError, match="method.map_top_k=1.5 is not allowed for method=bas"):
        BAS(map_top_k=1.5)
    with pytest.raises(MethodError, match="method=bas defines its layer placements"):
        BAS().check("googlenet")


def test_imagenet_takes_the_papers_imagenet_values(tmp_path: Path) -> None:
    from tests.helpers.configs import compose_config

    cub = compose_config("train", ["method=bas", "data=cub"], tmp_path / "a", tmp_path)
    imagenet = compose_config("train", ["method=bas", "data=imagenet"], tmp_path / "b", tmp_path)
    assert (cub.method.area_weight.resnet, cub.method.s2_weight.vgg, cub.method.map_top_k.vgg) == (1.2, 0.0, 80)
    assert (imagenet.method.area_weight.resnet, imagenet.method.area_weight.inception) == (2.0, 2.5)
    assert (imagenet.method.s2_weight.resnet, imagenet.method.map_top_k) == (1.0, 0)

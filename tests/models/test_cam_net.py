"""CAM networks: trunk cuts, the CAM identity, pooling, weight loading, optimizer groups."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision import models as tvm

from camexp.models import BACKBONES, CAMNet, WeightsError
from camexp.modules.cam_classifier import CAMClassifier

# (H, W) of the maps that feed the pooling, at 224 x 224 input (docs/protocol.md)
FEATURE_SIZES = {
    "vgg16": 14, "googlenet": 14, "alexnet": 13, "resnet50": 14, "resnet18": 14,
    "inception_v3": 25, "tiny": 28,
}

# the CNN trunks (the transformers have their own network and tests: test_vit.py)
CNN_BACKBONES = sorted(arch for arch, spec in BACKBONES.items() if spec.family != "vit")


@pytest.mark.parametrize("arch", CNN_BACKBONES)
def test_feature_map_size_at_224(arch: str) -> None:
    net = CAMNet(arch, num_classes=5, head_width=8).eval()
    with torch.no_grad():
        trunk_out = net.trunk(torch.randn(1, 3, 224, 224))
        features = net.head(trunk_out)
    size = FEATURE_SIZES[arch]
    assert trunk_out.shape == (1, BACKBONES[arch].out_channels, size, size)
    assert features.shape == (1, 8, size, size)


@pytest.mark.parametrize("arch", ["tiny", "resnet18", "googlenet"])
def test_cam_mean_plus_bias_equals_gap_logit(arch: str) -> None:
    torch.manual_seed(0)
    net = CAMNet(arch, num_classes=6, head_width=16).eval()
    torch.nn.init.normal_(net.classifier.bias)
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        out = net.forward_with_cams(images, classes=torch.arange(6).repeat(2, 1))
    assert out.cams.shape == (2, 6, *out.features.shape[-2:])
    from_cams = out.cams.mean(dim=(2, 3)) + net.classifier.bias
    torch.testing.assert_close(from_cams, out.logits, atol=1e-5, rtol=0)


def test_gmp_pools_the_maximum_and_cams_still_use_the_weights() -> None:
    torch.manual_seed(0)
    net = CAMNet("tiny", num_classes=4, pool="gmp", head_width=8).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = net.features(images)
        expected = features.amax(dim=(2, 3)) @ net.classifier.weight.T + net.classifier.bias
        torch.testing.assert_close(net(images), expected)
        cam = net.cams(features, torch.tensor([2, 0, 1]))
    manual = torch.einsum("c,chw->hw", net.classifier.weight[0], features[1])
    torch.testing.assert_close(cam[1, 0], manual)


def test_cams_upsample_to_the_input() -> None:
    net = CAMNet("tiny", num_classes=3, head_width=8).eval()
    with torch.no_grad():
        out = net.forward_with_cams(torch.randn(2, 3, 40, 48), torch.tensor([0, 2]), upsample=True)
    assert out.cams.shape == (2, 1, 40, 48)


def test_unknown_arch_and_pool_are_refused() -> None:
    with pytest.raises(ValueError, match="model.arch='vgg19' is unknown"):
        CAMNet("vgg19", 3)
    with pytest.raises(ValueError, match="model.pool='avg'"):
        CAMNet("tiny", 3, pool="avg")


def test_new_and_trunk_parameters_partition_the_network() -> None:
    net = CAMNet("resnet18", num_classes=3, head_width=8)
    new, trunk = net.new_parameters(), net.trunk_parameters()
    assert {id(p) for p in new}.isdisjoint({id(p) for p in trunk})
    assert len(new) + len(trunk) == len(list(net.parameters()))


def test_torchvision_state_dict_loads_into_the_trunk(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = tvm.resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    net = CAMNet("resnet18", num_classes=3, head_width=8, weights_path=path)
    for key, value in net.trunk.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], msg=key)


def test_camnet_state_dict_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(2)
    net = CAMNet("tiny", num_classes=3, head_width=8)
    path = tmp_path / "camnet.pt"
    torch.save(net.state_dict(), path)
    loaded = CAMNet("tiny", num_classes=3, head_width=8, weights_path=path)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
    with pytest.raises(WeightsError, match="does not match model.arch='tiny'"):
        CAMNet("tiny", num_classes=7, head_width=8, weights_path=path)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "alexnet.pth"
    torch.save(tvm.alexnet(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=r"alexnet.pth lacks .* trunk's parameters.*model.arch"):
        CAMNet("resnet18", num_classes=3, head_width=8, weights_path=path)


def test_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": Path("/tmp")}, path)
    with pytest.raises(WeightsError, match=r"Refusing to load .*evil.pth"):
        CAMNet("tiny", num_classes=3, weights_path=path)


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nope.pth does not exist.*model.weights_path="):
        CAMNet("tiny", num_classes=3, weights_path=tmp_path / "nope.pth")


def test_pretrained_without_network_explains_weights_path(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as error:
        CAMNet("alexnet", num_classes=3, head_width=8, pretrained=True)
    message = str(error.value)
    assert "alexnet-owt-7be5be79.pth" in message and "model.weights_path=" in message
    assert "no route to host" in message


def test_optimizer_gives_new_layers_a_multiple_of_the_trunk_rate() -> None:
    module = CAMClassifier("tiny", num_classes=3, head={"num_convs": 1, "width": 8},
                           optim={"lr": 0.02, "head_lr_mult": 10.0}, scheduler={"name": "none"})
    optimizer = module.configure_optimizers()
    assert [group["lr"] for group in optimizer.param_groups] == [0.02, pytest.approx(0.2)]
    assert optimizer.param_groups[0]["momentum"] == 0.9

"""Transformer backbones through timm: the network, its named blocks, the attention weights read
from timm's modules, and DeiT weights by name from files the tests save from timm's own
architecture."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch

from camexp.core.errors import ConfigError, UserError, WeightsError
from camexp.models.attention import AttentionTaps, attention_modules
from camexp.models.backbones import BACKBONES, Point
from camexp.models.networks import backbone_settings, build_network
from camexp.models.vit import VIT_ARCHS, token_layout
from camexp.models.vit_net import ViTCAMNet
from tests.helpers.models import qk_attention

pytestmark = pytest.mark.usefixtures("one_thread")


def test_deit_network_is_timms_architecture_with_the_patch_grid_and_a_class_map_head() -> None:
    torch.manual_seed(0)
    net = build_network("deit_tiny", num_classes=7, backbone={"img_size": 64})
    assert isinstance(net, ViTCAMNet)
    vit = net.trunk.vit
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=64)
    # the same parameters under the same names (the classifier aside), LayerNorm eps 1e-6
    assert {k: v.shape for k, v in vit.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items() if not k.startswith("head.")}
    assert vit.norm.eps == 1e-6 and len(vit.blocks) == 12 and vit.blocks[0].attn.num_heads == 3
    head = net.head.classes
    assert (head.kernel_size, head.stride, head.padding, head.bias is not None) == ((3, 3), (1, 1), (1, 1), True)
    net.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = vit(images)  # timm's own forward: the final-LayerNorm tokens
        features = net.features(images)
        grid = tokens[:, 1:].reshape(2, 4, 4, 192).permute(0, 3, 1, 2)  # class token dropped
        torch.testing.assert_close(net.trunk(images), grid)
        torch.testing.assert_close(features, head(grid))
        # the logits are GAP of the class maps; the CAM of class c is its channel
        torch.testing.assert_close(net(images), features.mean(dim=(2, 3)))
        torch.testing.assert_close(net.cams(features, torch.tensor([3, 5]))[:, 0],
                                   features[[0, 1], [3, 5]])


def test_transformers_declare_their_blocks_tokens_and_attention_as_points() -> None:
    with torch.device("meta"):
        net = build_network("minivit", num_classes=3)
    points = net.points()
    assert points["tokens"] == Point("trunk.vit.pos_drop", 96)
    assert points["block1"] == Point("trunk.vit.blocks.0", 96)
    assert points["block-1"] == points["block4"] == Point("trunk.vit.blocks.3", 96)
    assert points["block-3.attention"] == Point("trunk.vit.blocks.1.attn", 3)
    assert points["output"] == Point("trunk.grid", 96) and points["head.last"].path == "head.classes"
    modules = dict(net.named_modules())
    assert all(point.path in modules for point in points.values())
    assert {name for name, spec in BACKBONES.items() if spec.family == "vit"} == set(VIT_ARCHS)


def test_attention_taps_give_softmax_qk_before_dropout_and_leave_the_output_unchanged() -> None:
    torch.manual_seed(0)
    net = build_network("minivit", num_classes=4, backbone={"img_size": 32, "drop_path": 0.0}).eval()
    vit = net.trunk.vit
    for block in vit.blocks:
        block.attn.attn_drop.p = 0.5  # eval: no dropout, and the weights are read before it
    inputs: dict[int, torch.Tensor] = {}
    for index, block in enumerate(vit.blocks):
        block.register_forward_hook(lambda _m, args, _o, index=index: inputs.__setitem__(index, args[0]))
    taps = AttentionTaps(attention_modules(net))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        fused = net(images)
        assert all(m.fused_attn for m in taps.modules)  # timm's fused kernel outside recording
        with taps.recording():
            assert not any(m.fused_attn for m in taps.modules)
            unfused = net(images)
        weights = taps.stacked()
        expected = [qk_attention(block, inputs[i]) for i, block in enumerate(vit.blocks)]
    assert all(m.fused_attn for m in taps.modules)
    torch.testing.assert_close(unfused, fused, atol=1e-5, rtol=0)
    assert len(weights) == 4 and weights[0].shape == (3, 3, 17, 17)
    for got, want in zip(weights, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        torch.testing.assert_close(got.sum(-1), torch.ones(3, 3, 17))


def test_attention_of_torchvisions_vit_is_read_per_head() -> None:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                            mlp_dim=32, num_classes=5).eval()
    taps = AttentionTaps(attention_modules(net))
    captured = {}
    first = net.encoder.layers[0]
    first.ln_1.register_forward_hook(lambda _m, _i, out: captured.setdefault("x", out))
    with torch.no_grad(), taps.recording():
        net(torch.randn(2, 3, 32, 32))
    attention = first.self_attention
    q, k, _ = torch.nn.functional.linear(captured["x"], attention.in_proj_weight, attention.in_proj_bias).chunk(3, -1)
    q, k = (t.reshape(2, 17, 2, 8).transpose(1, 2) for t in (q, k))
    expected = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1)
    torch.testing.assert_close(taps.stacked()[0], expected, atol=1e-6, rtol=0)
    assert token_layout(net).prefix == 1 and token_layout(net).grid == (4, 4)


def test_attention_taps_refuse_a_network_without_attention() -> None:
    with pytest.raises(UserError, match="not a transformer"):
        AttentionTaps(attention_modules(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))))


# -- weights by name ------------------------------------------------------------------------


def _timm_deit_state(path: Path, release: bool = False, img_size: int = 224) -> dict[str, torch.Tensor]:
    """Save timm's own DeiT-Tiny (1000-class classifier included) as DeiT's release wraps it
    (``{"model": ...}``) or as a plain state dict."""
    torch.manual_seed(1)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=img_size)
    state = model.state_dict()
    torch.save({"model": state} if release else state, path)
    return state


@pytest.mark.parametrize("release", [True, False])
def test_a_deit_state_dict_loads_by_name_with_the_classifier_dropped(tmp_path: Path, release: bool) -> None:
    file = tmp_path / "deit_tiny_patch16_224.pth"
    state = _timm_deit_state(file, release)
    net = build_network("deit_tiny", num_classes=5, weights_path=str(file), backbone={"img_size": 224})
    own = net.trunk.vit.state_dict()
    assert "head.weight" in state and not any(key.startswith("head") for key in own)
    for key, value in own.items():
        assert torch.equal(value, state[key]), key
    assert net.head.classes.out_channels == 5  # camexp's head, not the file's classifier


def test_a_deit_state_dict_saved_at_224_is_resampled_to_a_smaller_input(tmp_path: Path) -> None:
    file = tmp_path / "deit.pth"
    state = _timm_deit_state(file)
    net = build_network("deit_tiny", num_classes=3, weights_path=str(file), backbone={"img_size": 64})
    position = net.trunk.vit.pos_embed
    assert position.shape == (1, 1 + 16, 192)
    torch.testing.assert_close(position[:, :1], state["pos_embed"][:, :1])  # the class token's
    assert torch.equal(net.trunk.vit.blocks[5].mlp.fc1.weight, state["blocks.5.mlp.fc1.weight"])


def test_safetensors_weights_load_too(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = _timm_deit_state(tmp_path / "unused.pth")
    save_file(state, str(tmp_path / "model.safetensors"))
    net = build_network("deit_tiny", num_classes=2, weights_path=str(tmp_path / "model.safetensors"))
    assert torch.equal(net.trunk.vit.cls_token, state["cls_token"])


@pytest.mark.parametrize(("content", "match"), [
    (None, r"Weights file .*missing\.pth does not exist\. Fix model\.weights_path="),
    ("resnet", r"lacks .* of the transformer's parameters, e\.g\. .*Check model\.arch \(deit_tiny, deit_small"),
    ("small", r"parameter .* has shape .* but the network expects .*Check that model\.arch matches"),
])
def test_a_wrong_or_missing_weights_file_gets_one_paragraph(tmp_path: Path, content: str | None, match: str) -> None:
    file = tmp_path / "missing.pth"
    if content == "resnet":
        from torchvision import models as tvm

        torch.save(tvm.resnet18(weights=None).state_dict(), file)
    elif content == "small":
        torch.save(timm.create_model("deit_small_patch16_224", pretrained=False).state_dict(), file)
    with pytest.raises(WeightsError, match=match):
        build_network("deit_tiny", num_classes=2, weights_path=str(file))


def test_without_internet_the_paragraph_names_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsError) as error:
        build_network("deit_tiny", num_classes=2, pretrained=True, backbone={"img_size": 32})
    message = str(error.value)
    assert "timm's deit_tiny_patch16_224" in message and "couldn't connect" in message
    assert "machine with internet" in message and "model.weights_path=" in message
    with pytest.raises(WeightsError, match=r"minivit.*has no ImageNet weights.*model.pretrained=false"):
        build_network("minivit", num_classes=2, pretrained=True)


def test_backbone_settings_are_the_transformers_and_an_unknown_one_is_named() -> None:
    assert backbone_settings("deit_small") == ["img_size", "drop_path"]
    assert backbone_settings("resnet50") == []
    net = build_network("minivit", num_classes=2, backbone={"drop_path": 0.2})
    rates = [getattr(block.drop_path1, "drop_prob", 0.0) for block in net.trunk.vit.blocks]
    assert rates == pytest.approx([0.0, 0.2 / 3, 0.4 / 3, 0.2])  # timm's linear rule
    with pytest.raises(ConfigError, match=r"model.backbone.drop_path is not a setting of model.arch='tiny'"):
        build_network("tiny", num_classes=2, backbone={"drop_path": 0.1})
    with pytest.raises(ConfigError, match=r"img_size=60 is not a multiple of minivit's patch size 8"):
        build_network("minivit", num_classes=2, backbone={"img_size": 60})
    with pytest.raises(ConfigError, match=r"built for 32x32 images .*data.crop_size=32"):
        build_network("minivit", num_classes=2, backbone={"img_size": 32})(torch.zeros(1, 3, 40, 40))


def test_every_pooling_pools_the_transformers_class_maps() -> None:
    """model.pool on a transformer: LSE and GMP pool the head's class maps as GAP does; WILDCAT's
    head gives its several maps per class, and each class's map is their mean."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    for pool, settings in (("gmp", {}), ("lse", {"pool_r": 4.0}),
                           ("wildcat", {"pool_maps": 3, "pool_k_max": 2, "pool_k_min": 1, "pool_alpha": 0.5})):
        net = build_network("minivit", num_classes=4, pool=pool, pool_settings=settings,
                            backbone={"img_size": 32}).eval()
        with torch.no_grad():
            maps = net.features(images)
            logits = net.classify(maps)
            cams = net.cams(maps, torch.tensor([[1, 3], [0, 2]]))
        per_class = maps.view(2, 4, -1, *maps.shape[-2:]).mean(dim=2)
        assert maps.shape[1] == 4 * (3 if pool == "wildcat" else 1) and logits.shape == (2, 4)
        torch.testing.assert_close(cams[0], per_class[0, [1, 3]])
        flat = per_class.flatten(2)
        if pool == "gmp":
            torch.testing.assert_close(logits, flat.amax(dim=2))
        elif pool == "lse":
            expected = torch.logsumexp(4.0 * flat, dim=2) / 4.0 - math.log(flat.shape[2]) / 4.0
            torch.testing.assert_close(logits, expected)
        else:
            ordered = flat.sort(dim=2, descending=True).values
            torch.testing.assert_close(logits, (ordered[..., :2].mean(2) + 0.5 * ordered[..., -1:].mean(2)) / 2)

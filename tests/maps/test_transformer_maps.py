"""Post-hoc maps on vision transformers (docs/posthoc.md#transformers): attention rollout against
its formula, the Grad-CAM family with the tokens reshaped to their grid, on timm's and
torchvision's ViTs and on camexp's transformer network, and timm's classifiers through eval."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from camexp.core.errors import UserError
from camexp.eval import evaluate
from camexp.maps.registry import map_source
from camexp.maps.rollout import fuse_heads, rollout
from camexp.maps.sources import MapSettings
from camexp.maps.target_layers import timm_default, torchvision_default
from camexp.models.networks import build_network
from tests.helpers.configs import TINY_SYNTHETIC, compose_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_timm_vit(classes: int = 5) -> torch.nn.Module:
    """timm's ViT with a 14x14 grid on 56 px images (patch 4), 3 narrow blocks."""
    torch.manual_seed(0)
    return VisionTransformer(img_size=56, patch_size=4, embed_dim=24, depth=3, num_heads=2,
                             num_classes=classes).eval()


def _module(net: torch.nn.Module) -> SimpleNamespace:
    return SimpleNamespace(net=net, device=torch.device("cpu"), network_name="the test's ViT")


def _trainer(size: int = 56) -> SimpleNamespace:
    return SimpleNamespace(datamodule=SimpleNamespace(eval_transform=SimpleNamespace(size=(size, size))),
                           is_global_zero=False, sanity_checking=False)


def _maps(method: str, net: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor,
          **settings) -> torch.Tensor:
    source = map_source(method, MapSettings(**settings))
    source.start("test", _trainer(images.shape[-1]), _module(net))
    try:
        return source.class_maps(_module(net), {}, {"input": images}, classes)
    finally:
        source.close()


def _attention_by_formula(net: VisionTransformer, images: torch.Tensor) -> list[torch.Tensor]:
    """Each block's softmax(q k^T / sqrt(d)) from its own qkv layer, block by block."""
    weights = []
    with torch.no_grad():
        tokens = net._pos_embed(net.patch_embed(images))
        for block in net.blocks:
            attn = block.attn
            normed = block.norm1(tokens)
            batch, count, width = normed.shape
            qkv = attn.qkv(normed).reshape(batch, count, 3, attn.num_heads, width // attn.num_heads)
            q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
            weights.append(torch.softmax(q @ k.transpose(-2, -1) / (width // attn.num_heads) ** 0.5, -1))
            tokens = block(tokens)
    return weights


def test_rollout_equals_its_formula_on_a_tiny_vit() -> None:
    net = _tiny_timm_vit()
    images = torch.randn(2, 3, 56, 56)
    classes = torch.tensor([[1, 0, 2], [4, 4, 3]])
    maps = _maps("rollout", net, images, classes)
    assert maps.shape == (2, 3, 14, 14)
    assert torch.equal(maps[:, 0], maps[:, 2])  # one class-agnostic map
    weights = [w.double().numpy() for w in _attention_by_formula(net, images)]
    for b in range(2):
        joint = np.eye(197)
        for w in weights:  # (A + I) / 2 with A the head mean, first block to last
            joint = ((w[b].mean(axis=0) + np.eye(197)) / 2) @ joint
        expected = joint[0, 1:].reshape(14, 14)
        np.testing.assert_allclose(maps[b, 0].double().numpy(), expected, rtol=1e-4, atol=1e-7)
    assert all(block.attn.fused_attn for block in net.blocks)  # the hooks left with the source


def test_rollout_head_fusion_by_max_and_discarding_the_lowest_entries() -> None:
    maxed = torch.tensor([[0.1, 0.6, 0.3], [0.45, 0.4, 0.8], [0.35, 0.65, 0.42]])
    weights = torch.stack([maxed / 2, maxed, maxed / 4])[None]  # (1, 3 heads, 3, 3)
    fused = fuse_heads(weights, "max", discard=0.5)
    # max over heads, then the 4 lowest of 9 entries set to 0, the class token's own (0.1) kept
    expected = torch.where(maxed >= 0.42, maxed, torch.zeros(()))
    expected[0, 0] = 0.1
    assert torch.equal(fused[0], expected)
    torch.testing.assert_close(fuse_heads(weights, "mean")[0], weights[0].mean(dim=0))
    joint = rollout([fused, fused])
    step = fused[0] + torch.eye(3)
    step = step / step.sum(-1, keepdim=True)
    torch.testing.assert_close(joint[0], step @ step)


def test_rollout_needs_a_transformer_with_a_class_token() -> None:
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    with pytest.raises(UserError, match=r"localization.method=rollout needs a vision transformer"):
        _maps("rollout", cnn, torch.randn(1, 3, 8, 8), torch.zeros(1, 1, dtype=torch.long))
    pooled = VisionTransformer(img_size=16, patch_size=4, embed_dim=8, depth=1, num_heads=2,
                               class_token=False, global_pool="avg", num_classes=2)
    with pytest.raises(UserError, match=r"has no class token"):
        _maps("rollout", pooled, torch.randn(1, 3, 16, 16), torch.zeros(1, 1, dtype=torch.long))


def test_gradcam_on_a_timm_vit_gives_a_14x14_map_per_image_from_the_reshaped_tokens() -> None:
    net = _tiny_timm_vit()
    assert timm_default(net) == "blocks.2.norm1"
    images = torch.randn(3, 3, 56, 56)
    classes = torch.tensor([[0, 1], [2, 3], [4, 0]])
    maps = _maps("gradcam", net, images, classes, target_layer=timm_default(net))
    assert maps.shape == (3, 2, 14, 14) and torch.isfinite(maps).all() and maps.amax() > 0
    # by hand: the layer's patch tokens as a grid, weighted by their mean gradient, ReLU
    kept = {}
    net.blocks[2].norm1.register_forward_hook(lambda _m, _i, out: kept.setdefault("tokens", out))
    logits = net(images[:1])
    tokens = kept["tokens"]
    (grad,) = torch.autograd.grad(logits[0, 1], tokens)
    grid = tokens[0, 1:].reshape(14, 14, 24).permute(2, 0, 1)
    weights = grad[0, 1:].reshape(14, 14, 24).permute(2, 0, 1).mean(dim=(1, 2))
    expected = torch.relu((weights[:, None, None] * grid).sum(0))
    torch.testing.assert_close(maps[0, 1], expected.detach(), atol=1e-6, rtol=1e-4)


def test_gradcam_and_rollout_on_torchvisions_vit_and_camexps_transformer() -> None:
    torch.manual_seed(0)
    vit = TorchvisionViT(image_size=56, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16,
                         mlp_dim=32, num_classes=4).eval()
    assert torchvision_default("vit_b_16", vit) == "encoder.layers.encoder_layer_1.ln_1"
    images, classes = torch.randn(2, 3, 56, 56), torch.tensor([[0, 1], [2, 3]])
    for method in ("gradcam", "rollout"):
        maps = _maps(method, vit, images, classes, target_layer=torchvision_default("vit_b_16", vit))
        assert maps.shape == (2, 2, 14, 14) and torch.isfinite(maps).all(), method
    # camexp's DeiT-style network: Grad-CAM explains its token grid (the trunk) by default
    net = build_network("minivit", num_classes=4, backbone={"img_size": 112}).eval()
    module = SimpleNamespace(net=net, device=torch.device("cpu"))
    source = map_source("gradcam")
    source.start("test", _trainer(112), module)
    maps = source.class_maps(module, {}, {"input": torch.randn(2, 3, 112, 112)}, classes)
    source.close()
    assert maps.shape == (2, 2, 14, 14)


@pytest.mark.slow
def test_a_timm_classifier_through_eval_from_a_saved_weights_file(tmp_path: Path, data_dir: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "deit_tiny_10_classes.pth"  # saved at 224: resampled to the 56 px eval size
    torch.save(timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=10).state_dict(), weights)
    base = TINY_SYNTHETIC + ["trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1",
                             "localization.cam_curve_interval=0.01", "trainer.limit_test_batches=1",
                             "model=timm", "model.name=deit_tiny_patch16_224", f"model.weights_path={weights}"]
    results = {}
    for method in ("gradcam", "rollout"):
        results[method] = evaluate(compose_config("eval", base + [f"localization.method={method}"],
                                                  tmp_path / method, data_dir))
        assert 0.0 <= results[method]["test/MaxBoxAccV2"] <= 100.0
    assert results["gradcam"]["test/acc_top1"] == results["rollout"]["test/acc_top1"]
    assert results["gradcam"]["test/PxAP"] != results["rollout"]["test/PxAP"]
    with pytest.raises(UserError, match=r"model.name='deit_tiny' is not allowed; use one of"):
        evaluate(compose_config("eval", base + ["model.name=deit_tiny"], tmp_path / "bad", data_dir))
    with pytest.raises(UserError, match=r"pretrained deit_tiny_patch16_224 has 1000 classes but model.num_classes=10"):
        evaluate(compose_config("eval", base + ["model.weights_path=null"], tmp_path / "no_file", data_dir))

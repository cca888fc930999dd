"""TS-CAM, SCM and SAT against their formulas (docs/methods.md#transformers), on a DeiT-Tiny
built by timm at a small input with fixed (seeded) weights, and on hand-made inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from camexp.core.errors import MethodError
from camexp.methods.cam import CAM
from camexp.methods.sat import SAT, area_loss, gaussian_kernel, normalization_loss
from camexp.methods.scm import SCM, DiffusionLayer, grid_laplacian, newton_schulz_inverse
from camexp.methods.tscam import TSCAM
from camexp.models.networks import build_network
from tests.helpers.models import qk_attention


def _block_inputs(net) -> dict[int, torch.Tensor]:
    inputs: dict[int, torch.Tensor] = {}
    for index, block in enumerate(net.trunk.vit.blocks):
        block.register_forward_hook(lambda _m, args, _o, index=index: inputs.__setitem__(index, args[0]))
    return inputs


def _deit(method, size: int = 64, classes: int = 6):
    torch.manual_seed(0)
    return build_network("deit_tiny", num_classes=classes, method=method,
                         backbone={"img_size": size, "drop_path": 0.0})


def test_tscam_map_is_the_summed_class_token_attention_times_the_class_map() -> None:
    method = TSCAM()
    net = _deit(method).eval()
    inputs = _block_inputs(net)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = method.forward(net, images, torch.tensor([1, 4]))
        classes = torch.tensor([[1, 2], [4, 0]])
        maps = method.maps(net, outputs, classes)
        weights = [qk_attention(block, inputs[i]) for i, block in enumerate(net.trunk.vit.blocks)]
    # the mean over heads, the sum over the 12 blocks, the class token's row at the 4x4 patches
    attention = torch.stack(weights).mean(dim=2).sum(dim=0)[:, 0, 1:].reshape(2, 1, 4, 4)
    features = outputs["features"]
    expected = attention * torch.stack([features[0, [1, 2]], features[1, [4, 0]]])
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-5)
    # the logits are GAP of the head's output, as CAM's on the same network
    torch.testing.assert_close(outputs["logits"], features.mean(dim=(2, 3)))
    torch.testing.assert_close(features, net.features(images))


def test_tscam_trains_exactly_as_cam_with_timms_fused_attention() -> None:
    tscam, cam = TSCAM(), CAM()
    net_t, net_c = _deit(tscam, 32).train(), _deit(cam, 32).train()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    torch.manual_seed(5)
    loss_t = tscam.loss(net_t, tscam.forward(net_t, images, labels), {"label": labels})
    torch.manual_seed(5)
    loss_c = cam.loss(net_c, cam.forward(net_c, images, labels), {"label": labels})
    assert torch.equal(loss_t, loss_c)
    assert all(block.attn.fused_attn for block in net_t.trunk.vit.blocks)


def test_transformer_methods_refuse_a_cnn_and_name_the_transformers() -> None:
    for method in (TSCAM(), SCM(), SAT()):
        with pytest.raises(MethodError, match=r"defines its layer placements for model.arch in \['deit_base', "
                                              r"'deit_small', 'deit_tiny', 'minivit'\], not for 'tiny'"):
            build_network("tiny", num_classes=3, method=method)


# -- SCM ------------------------------------------------------------------------------------


def test_newton_schulz_reaches_the_inverse_on_a_small_grid() -> None:
    torch.manual_seed(0)
    laplacian = grid_laplacian(3, 3)
    assert torch.equal(laplacian.sum(dim=1), torch.zeros(9))
    assert laplacian[4].tolist() == [0, -1, 0, -1, 4, -1, 0, -1, 0]  # the centre: 4 neighbours
    assert laplacian[0].tolist() == [2, -1, 0, -1, 0, 0, 0, 0, 0]  # a corner: 2
    tokens = F.normalize(torch.randn(2, 9, 5), dim=-1)
    matrix = laplacian * (2.0 * tokens @ tokens.transpose(1, 2) - 1)
    inverse = newton_schulz_inverse(matrix, iterations=30)
    # within 1e-4 of the exact inverse after 30 iterations from X0 = 0.002 M^T
    torch.testing.assert_close(inverse, torch.linalg.inv(matrix), atol=1e-4, rtol=0)
    # X0 is held constant: the gradient reaches M through the iterations only
    matrix.requires_grad_(True)
    assert not newton_schulz_inverse(matrix, iterations=0).requires_grad
    assert newton_schulz_inverse(matrix, iterations=1).requires_grad


def test_one_diffusion_layer_is_its_formula_on_hand_made_inputs() -> None:
    layer = DiffusionLayer((2, 2), iterations=3)
    with torch.no_grad():
        layer.strength.fill_(1.5)
        layer.temperature.fill_(0.7)
    features = torch.tensor([[[[1.0, 2.0], [0.5, -1.0]], [[0.0, 1.0], [2.0, 1.0]]]])  # B=1, C=2
    attention = torch.tensor([[0.2, 1.0, 0.4, 0.0]])
    refined, spread = layer(features, attention)
    # by hand: S cosine similarity of the 4 positions' 2-vectors, L of the 2x2 grid
    vectors = features[0].reshape(2, 4).T
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    similarity = unit @ unit.T
    laplacian = torch.tensor([[2.0, -1, -1, 0], [-1, 2, 0, -1], [-1, 0, 2, -1], [0, -1, -1, 2]])
    matrix = laplacian * (1.5 * similarity - 1)
    inverse = 0.002 * matrix.T
    for _ in range(3):
        inverse = inverse @ (2 * torch.eye(4) - matrix @ inverse)
    r = inverse.T @ attention[0]
    r = r / (0.7 * 1.0)
    r = r - torch.tanh(r)
    r = (r - r.min()) / (r.max() - r.min())
    torch.testing.assert_close(spread[0], attention[0] + r)
    torch.testing.assert_close(refined[0], features[0] * (1 + r.reshape(1, 2, 2)))


def test_scm_refines_in_training_only_and_its_map_is_the_normalized_attention() -> None:
    method = SCM(num_layers=2)
    net = _deit(method, 32)
    assert [layer.iterations for layer in net.method_layers] == [16, 4]
    calls = []
    for layer in net.method_layers:
        layer.register_forward_hook(lambda *_: calls.append(1))
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    net.train()
    outputs = method.forward(net, images, labels)
    assert len(calls) == 2 and not torch.allclose(outputs["logits"], outputs["features"].mean(dim=(2, 3)))
    method.loss(net, outputs, {"label": labels}).backward()
    assert all(layer.strength.grad is not None for layer in net.method_layers)
    calls.clear()
    net.eval()
    with torch.no_grad():
        outputs = method.forward(net, images, labels)
        maps = method.maps(net, outputs, torch.tensor([[1], [2]]))
    assert not calls  # no diffusion layer at evaluation
    torch.testing.assert_close(outputs["logits"], outputs["features"].mean(dim=(2, 3)))
    attention = outputs["attention"]
    assert attention.amin(dim=(2, 3)).eq(0).all() and attention.amax(dim=(2, 3)).eq(1).all()
    torch.testing.assert_close(maps[:, 0], attention[:, 0] * outputs["features"][[0, 1], [1, 2]])


def test_scm_refuses_a_negative_layer_count() -> None:
    with pytest.raises(MethodError, match=r"method.num_layers=-1 is not allowed for method=scm"):
        SCM(num_layers=-1)


# -- SAT ------------------------------------------------------------------------------------


def test_sat_token_sits_after_the_patch_tokens_with_its_own_position_embedding() -> None:
    method = SAT()
    net = _deit(method, 32).eval()
    token = net.method_layers
    seen = {}
    net.trunk.vit.blocks[0].register_forward_pre_hook(lambda _m, args: seen.setdefault("tokens", args[0]))
    vit = net.trunk.vit
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        method.forward(net, images, None)
        patches = vit.patch_embed(images)
        expected = torch.cat([vit.cls_token.expand(2, -1, -1), patches], 1) + vit.pos_embed
    tokens = seen["tokens"]
    assert tokens.shape == (2, 1 + 4 + 1, 192)
    torch.testing.assert_close(tokens[:, :5], expected)
    torch.testing.assert_close(tokens[:, 5], (token.token + token.position)[0].expand(2, -1))
    assert token.no_weight_decay() == {"token", "position"}
    assert token.token.std() < 0.05 and not torch.equal(token.token, token.position)  # trunc normal 0.02


def test_sat_gates_only_the_last_three_blocks_and_its_map_is_their_mean_gate() -> None:
    method = SAT()
    net = _deit(method, 32).eval()
    inputs = _block_inputs(net)
    blocks = net.trunk.vit.blocks
    with torch.no_grad():
        outputs = method.forward(net, torch.randn(2, 3, 32, 32), None)
        gates, rows = [], []
        for index, block in enumerate(blocks):
            attn = block.attn
            normed = block.norm1(inputs[index])
            qkv = attn.qkv(normed).reshape(2, 6, 3, 3, 64)
            q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
            logits = q @ k.transpose(-2, -1) / 8.0
            gate = torch.sigmoid(logits[:, :, -1].mean(dim=1))  # (B, N + 1)
            weights = logits.softmax(-1) * (gate[:, None, None] if index >= 9 else 1)
            value = qkv[:, :, 2].transpose(1, 2)
            mixed = attn.proj((weights @ value).transpose(1, 2).reshape(2, 6, 192))
            after = inputs[index] + mixed
            after = after + block.mlp(block.norm2(after))
            if index + 1 < len(blocks):
                torch.testing.assert_close(after, inputs[index + 1], atol=1e-5, rtol=1e-5)
            gates.append(gate)
            rows.append(weights.sum(-1))
    # blocks 1-9 ungated (rows sum to 1), 10-12 gated (they do not)
    assert all(torch.allclose(row, torch.ones_like(row)) for row in rows[:9])
    assert not any(torch.allclose(row, torch.ones_like(row)) for row in rows[9:])
    expected = torch.stack(gates[9:]).mean(dim=0)[:, 1:5].reshape(2, 1, 2, 2)
    torch.testing.assert_close(outputs["foreground"], expected, atol=1e-6, rtol=1e-5)
    maps = method.maps(net, outputs, torch.tensor([[0, 3, 5], [1, 1, 2]]))
    assert maps.shape == (2, 3, 2, 2) and torch.equal(maps[:, 0], maps[:, 2])  # class-agnostic


def test_sat_kernel_and_losses_equal_their_formulas_on_hand_made_maps() -> None:
    kernel = gaussian_kernel()[0, 0]
    torch.testing.assert_close(kernel, torch.tensor([[0.0026, 0.0460, 0.0026], [0.0460, 0.8054, 0.0460],
                                                     [0.0026, 0.0460, 0.0026]]), atol=1e-4, rtol=0)
    assert kernel.sum().item() == pytest.approx(1.0)
    maps = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [0.5, 0.0]]]])
    # area: | mean over the batch and pixels - threshold | = |3.5 / 8 - 0.25|
    assert area_loss(maps, 0.25).item() == pytest.approx(0.1875)
    # normalization: smooth by G with zero padding, then mean((1 - s) s)
    smooth = torch.zeros_like(maps)
    padded = F.pad(maps, (1, 1, 1, 1))
    for b in range(2):
        for y in range(2):
            for x in range(2):
                smooth[b, 0, y, x] = (padded[b, 0, y:y + 3, x:x + 3] * kernel).sum()
    assert normalization_loss(maps, gaussian_kernel()).item() == pytest.approx(((1 - smooth) * smooth).mean().item())
    method = SAT(area_threshold=0.1, area_weight=2.0, normalization_weight=0.5)
    net = _deit(method, 32).train()
    labels = torch.tensor([0, 1])
    outputs = method.forward(net, torch.randn(2, 3, 32, 32), labels)
    total = method.loss(net, outputs, {"label": labels})
    expected = (F.cross_entropy(outputs["logits"], labels) + 2.0 * area_loss(outputs["foreground"], 0.1)
                + 0.5 * normalization_loss(outputs["foreground"], gaussian_kernel()))
    torch.testing.assert_close(total, expected)
    total.backward()
    assert net.method_layers.token.grad is not None and net.method_layers.token.grad.abs().sum() > 0

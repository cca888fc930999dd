"""Post-hoc maps (the grad-cam package) under the WSOL metrics: raw maps, target layers,
camexp checkpoints and torchvision classifiers through camexp.eval, the cv2 build."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from camexp.core.errors import TargetLayerError, UserError
from camexp.eval import evaluate
from camexp.maps.posthoc import POSTHOC_METHODS, PosthocMaps
from camexp.maps.target_layers import camnet_default, resolve_target_layer, torchvision_default
from camexp.models import CAMNet
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config


def _normalized(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(-2, -1), keepdim=True)
    return (maps - low) / (maps.amax(dim=(-2, -1), keepdim=True) - low)


@pytest.mark.parametrize("num_convs", [1, 0])
def test_gradcam_of_a_gap_network_is_relu_cam_up_to_a_positive_factor(num_convs: int) -> None:
    """GAP: dS_c/df_k(x, y) = w_ck / (h w), so Grad-CAM's weights are w_c / (h w) and its map
    is ReLU(CAM) / (h w), at the same (feature) resolution."""
    torch.manual_seed(0)
    net = CAMNet("tiny", 6, head_num_convs=num_convs, head_width=16).eval()
    images = torch.randn(4, 3, 48, 48)
    classes = torch.tensor([[0, 1, 2], [3, 4, 5], [5, 0, 1], [2, 2, 3]])
    name, layer, channels = resolve_target_layer(net, None, camnet_default(net), (48, 48), "tiny")
    assert name == ("head" if num_convs else "trunk") and channels == (16 if num_convs else 128)
    gradcam = PosthocMaps(net, "gradcam", layer)(images, classes)
    with torch.no_grad():
        relu_cam = net.cams(net.features(images), classes).clamp(min=0)
    assert gradcam.shape == relu_cam.shape == (4, 3, 6, 6)
    positive = relu_cam.amax(dim=(-2, -1)) > 0  # an all-zero map has no normalization
    assert positive.sum() >= 8
    torch.testing.assert_close(_normalized(gradcam)[positive], _normalized(relu_cam)[positive],
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(gradcam, relu_cam / 36, atol=1e-6, rtol=1e-4)


def test_raw_map_is_the_library_output_before_its_scaling_and_resize() -> None:
    """The library's own result is min-max(raw map) resized to the input by OpenCV: ours,
    scaled and resized the same way, gives it back; ours is at feature resolution."""
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(1)
    net = CAMNet("tiny", 5, head_width=16).eval()
    images = torch.randn(3, 3, 40, 40)
    labels = torch.tensor([0, 3, 4])
    ours = PosthocMaps(net, "gradcampp", net.head)(images, labels[:, None])[:, 0].numpy()
    library = GradCAMPlusPlus(net, [net.head])(images, [ClassifierOutputTarget(int(c)) for c in labels])
    assert ours.shape == (3, 5, 5) and library.shape == (3, 40, 40)
    for raw, theirs in zip(ours, library, strict=True):
        shifted = raw - raw.min()
        resized = cv2.resize(np.float32(shifted / (1e-7 + shifted.max())), (40, 40))
        resized = resized - resized.min()  # the library scales once more after averaging layers
        np.testing.assert_allclose(resized / (1e-7 + resized.max()), theirs, atol=1e-5)


def test_relu_off_keeps_negative_values_and_class_agnostic_methods_repeat_one_map() -> None:
    torch.manual_seed(2)
    net = CAMNet("tiny", 5, head_width=16).eval()
    images = torch.randn(2, 3, 40, 40)
    classes = torch.tensor([[0, 1], [2, 3]])
    raw = PosthocMaps(net, "hirescam", net.head, relu=False)(images, classes)
    assert raw.min() < 0
    eigen = PosthocMaps(net, "eigencam", net.head)(images, classes)
    torch.testing.assert_close(eigen[:, 0], eigen[:, 1])


def test_parameter_gradients_are_left_as_they_were() -> None:
    net = CAMNet("tiny", 4, head_width=8)
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    before = {name: p.grad.clone() for name, p in net.named_parameters()}
    PosthocMaps(net, "gradcam", net.head)(torch.randn(2, 3, 32, 32), torch.tensor([[0], [1]]))
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, before[name], msg=name)


# torchvision family -> expected default target layer (one small model per family)
FAMILIES = {
    "resnet18": "layer4", "densenet121": "features", "alexnet": "features.11",
    "mobilenet_v3_small": "features", "efficientnet_b0": "features", "convnext_tiny": "features",
    "regnet_y_400mf": "trunk_output", "mnasnet0_5": "layers", "shufflenet_v2_x0_5": "conv5",
    "squeezenet1_1": "features", "googlenet": "inception5b", "inception_v3": "Mixed_7c",
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_torchvision_family_has_a_default_target_layer_with_spatial_maps(name: str) -> None:
    kwargs = {"init_weights": False, "aux_logits": False} if name in ("googlenet", "inception_v3") else {}
    net = torchvision.models.get_model(name, weights=None, num_classes=3, **kwargs).eval()
    default = torchvision_default(name, net)
    assert default == FAMILIES[name]
    size = (96, 96) if name == "inception_v3" else (64, 64)
    _, layer, channels = resolve_target_layer(net, None, default, size, name)
    assert channels > 1 and isinstance(layer, torch.nn.Module)


def test_a_torchvision_model_without_a_conv_last_stage_names_the_override_and_the_layers() -> None:
    # (ViTs have one: the last block's first LayerNorm, tests/maps/test_transformer_maps.py)
    net = torchvision.models.swin_t(weights=None).eval()
    assert torchvision_default("swin_t", net) is None
    with pytest.raises(TargetLayerError) as error:
        resolve_target_layer(net, None, None, (64, 64), "torchvision's swin_t")
    message = str(error.value)
    assert "has no default target layer" in message
    assert "localization.target_layer=" in message and "features.0" in message
    assert isinstance(error.value, UserError)


def test_a_wrong_target_layer_lists_the_ones_that_give_maps() -> None:
    net = torchvision.models.resnet18(weights=None).eval()
    with pytest.raises(TargetLayerError, match=r"'layer5' is not a module") as error:
        resolve_target_layer(net, "layer5", "layer4", (64, 64), "torchvision's resnet18")
    assert "layer4.0, layer4.1, layer4" in str(error.value)
    with pytest.raises(TargetLayerError, match=r"'fc' of .* gives \(1, 1000\), not \(B, C, h, w\)"):
        resolve_target_layer(net, "fc", "layer4", (64, 64), "torchvision's resnet18")


def test_cv2_stays_the_headless_build() -> None:
    """grad-cam asks for opencv-python-headless (its metadata), not opencv-python: a second
    cv2 build would overwrite the first."""
    requires = importlib.metadata.requires("grad-cam")
    assert any(r.startswith("opencv-python-headless") for r in requires), requires
    assert not any(r.split(";")[0].strip() in ("opencv-python", "opencv-contrib-python") for r in requires)
    installed = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
    assert "opencv-python-headless" in installed
    assert not installed & {"opencv-python", "opencv-contrib-python"}
    done = subprocess.run([sys.executable, "-c", "import cv2, pytorch_grad_cam; print(cv2.__version__)"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# -- through camexp.eval --------------------------------------------------------------------

EVAL = TINY_SYNTHETIC + ["trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=2",
                         "localization.cam_curve_interval=0.01"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, data_dir: Path) -> Path:
    output_dir = tmp_path_factory.mktemp("posthoc") / "train"
    cfg = compose_config("train", TINY_SYNTHETIC + [
        "trainer.max_epochs=1", "trainer.limit_train_batches=3", "test=false",
        "trainer.enable_progress_bar=false", "model.head.width=8"], output_dir, data_dir)
    train(cfg)
    return output_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_every_method_runs_through_eval_on_a_camexp_checkpoint(tiny_checkpoint, tmp_path, data_dir) -> None:
    results = {}
    for method in ["cam", *POSTHOC_METHODS]:
        out = tmp_path / method
        cfg = compose_config("eval", EVAL + [f"ckpt_path={tiny_checkpoint}", "trainer.limit_test_batches=1",
                                             f"localization.method={method}"], out, data_dir)
        results[method] = evaluate(cfg)
        saved = json.loads((out / "metrics.json").read_text())
        for key in ("MaxBoxAccV2", "MaxBoxAccV2_IoU50", "MaxBoxAcc", "PxAP", "loc_top5_err",
                    "loc_gt_known", "MaxBoxAccV2_center_baseline"):
            assert 0.0 <= saved[f"test/{key}"] <= 100.0, (method, key)
        assert (out / "localization/test_box_accuracy_curve.csv").is_file()
        assert len(list((out / "cam_pictures").glob("*.png"))) == 1  # test image 0 of 0 and 19
    pxap = {method: r["test/PxAP"] for method, r in results.items()}
    # GAP network: Grad-CAM, HiRes-CAM and XGrad-CAM weigh each channel by w_c / (h w)
    assert pxap["gradcam"] == pytest.approx(pxap["hirescam"], abs=1e-4)
    assert pxap["gradcam"] == pytest.approx(pxap["xgradcam"], abs=1e-4)
    distinct = ["cam", "gradcam", "gradcampp", "layercam", "scorecam", "ablationcam", "eigencam",
                "fullgrad", "randomcam"]
    assert len({round(pxap[m], 4) for m in distinct}) == len(distinct), pxap
    # classification does not depend on the map
    assert len({r["test/acc_top1"] for r in results.values()}) == 1


@pytest.mark.slow
def test_torchvision_classifier_through_eval_from_a_saved_weights_file(tmp_path, data_dir, capfd) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "mobilenet_v3_small_random.pth"  # the cheapest torchvision classifier
    torch.save(torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).state_dict(), weights)
    results = {}
    # every family of cost (gradients, second order, all bias layers, per channel, none); all
    # methods run on the camexp checkpoint above
    for method in ["backprop", "gradcam", "gradcampp", "layercam", "shapleycam", "fullgrad",
                   "scorecam", "ablationcam", "eigencam"]:
        out = tmp_path / method
        overrides = EVAL + ["model=torchvision", "model.name=mobilenet_v3_small", f"model.weights_path={weights}",
                            f"localization.method={method}", "data.eval_batch_size=2",
                            "trainer.limit_test_batches=1"]
        if method in ("scorecam", "ablationcam"):  # a narrow layer: 24 channels, 24 passes a map
            overrides.append("localization.target_layer=features.3")
        if method == "scorecam":  # its progress bar over the forward chunks
            overrides.append("trainer.enable_progress_bar=true")
        results[method] = evaluate(compose_config("eval", overrides, out, data_dir))
        assert 0.0 <= results[method]["test/MaxBoxAccV2"] <= 100.0
        assert (out / "metrics.json").is_file()
    printed = capfd.readouterr()
    assert "localization.method=gradcam (test): target layer 'features', 576 channels" in printed.out
    # limit_test_batches is honoured: 1 batch of 2 images, 6 maps each, 24 channels in 1 chunk
    assert "localization.method=scorecam (test): target layer 'features.3', 24 channels" in printed.out
    assert "1 batches" in printed.out
    assert "scorecam forward chunks" in printed.err and "12/12" in printed.err
    pxap = {m: r["test/PxAP"] for m, r in results.items()}
    assert len({round(pxap[m], 4) for m in ("gradcam", "scorecam", "eigencam", "fullgrad")}) == 4


def test_torchvision_model_refuses_cam_and_a_wrong_weights_file(tmp_path, data_dir) -> None:
    weights = tmp_path / "resnet18_1000.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    base = EVAL + ["model=torchvision", "model.name=resnet18", "trainer.limit_test_batches=1"]
    with pytest.raises(UserError, match=r"num_classes=10: .*fc.weight"):
        evaluate(compose_config("eval", base + [f"model.weights_path={weights}"], tmp_path / "a", data_dir))
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), weights)
    with pytest.raises(UserError, match=r"method=cam needs .*localization.method=gradcam"):
        evaluate(compose_config("eval", base + [f"model.weights_path={weights}"], tmp_path / "b", data_dir))
    with pytest.raises(UserError, match=r"model.name='resnet5' is not allowed; use one of .*'resnet50'"):
        evaluate(compose_config("eval", base + ["model.name=resnet5"], tmp_path / "c", data_dir))


def test_eval_without_a_checkpoint_or_torchvision_model_is_a_clear_error(tmp_path, data_dir) -> None:
    with pytest.raises(UserError, match=r"needs ckpt_path=.*model=torchvision"):
        evaluate(compose_config("eval", EVAL, tmp_path / "e", data_dir))


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "layercam"])
def test_one_forward_pass_for_all_classes_gives_the_library_call_per_class(method: str) -> None:
    torch.manual_seed(3)
    net = CAMNet("tiny", 5, head_width=8).eval()
    images = torch.randn(2, 3, 32, 32)
    classes = torch.tensor([[0, 1, 4], [2, 3, 3]])
    maps = PosthocMaps(net, method, net.head, batch_size=4)
    assert maps.one_pass
    together = maps(images, classes)
    maps.one_pass = False
    torch.testing.assert_close(together, maps(images, classes), atol=1e-6, rtol=1e-5)

"""Every training method through the real configs: train, test, eval, resume, and a method
plugged in from outside the package (docs/methods.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from camexp.config.validate import validate
from camexp.eval import evaluate
from camexp.methods import Method, MethodError
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config
from tests.helpers.runs import assert_same_weights

METHODS = ["has", "cutmix", "adl", "acol", "spg", "bas", "nlccam"]
CLASSES = {"has": "HideAndSeek", "cutmix": "CutMix", "adl": "ADL", "acol": "ACoL", "spg": "SPG",
           "bas": "BAS", "nlccam": "NLCCAM", "cam": "CAM"}
# every method, then CAM with each pooling beside GAP (method, model.pool)
RUNS = [(method, "gap") for method in METHODS] + [("cam", "lse"), ("cam", "wildcat")]
FAST = TINY_SYNTHETIC + ["trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=2",
                         "localization.cam_curve_interval=0.01", "trainer.limit_val_batches=1"]


@pytest.mark.slow
@pytest.mark.parametrize("method, pool", RUNS)
def test_method_trains_tests_evaluates_and_resumes_exactly(method: str, pool: str, tmp_path: Path,
                                                           data_dir: Path) -> None:
    chosen = [f"method={method}", f"model.pool={pool}"]
    run = FAST + chosen + ["trainer.max_epochs=2"]
    full = tmp_path / "full"
    metrics = train(compose_config("train", run, full, data_dir))
    saved = json.loads((full / "metrics.json").read_text())
    for key in ("test/MaxBoxAccV2", "test/MaxBoxAcc", "test/PxAP", "test/loc_gt_known", "test/acc_top1"):
        assert key in saved, key
    assert 0.0 <= saved["test/MaxBoxAccV2"] <= 100.0
    assert len(list((full / "cam_pictures").glob("*.png"))) == 2
    # the checkpoint rebuilds the method's network from its own hyper-parameters
    last = full / "checkpoints" / "last.ckpt"
    saved_settings = torch.load(last, weights_only=True)["hyper_parameters"]
    assert saved_settings["method"]["_target_"].endswith(CLASSES[method]) and saved_settings["pool"] == pool
    evaluated = evaluate(compose_config("eval", FAST + [f"ckpt_path={last}"], tmp_path / "eval", data_dir))
    reference = evaluate(compose_config("eval", FAST + [f"ckpt_path={last}"], tmp_path / "eval2", data_dir))
    assert evaluated == reference  # same checkpoint, same numbers
    # train tested its best epoch; evaluated last.ckpt: the same when the best is the last
    best = next((full / "checkpoints").glob("epoch_*.ckpt"))
    if best.name == "epoch_001.ckpt":
        assert evaluated["test/acc_top1"] == pytest.approx(metrics["test/acc_top1"])
        assert evaluated["test/MaxBoxAccV2"] == pytest.approx(metrics["test/MaxBoxAccV2"])

    # the same run again, in two halves: one epoch, then resume=auto for the second; it ends with
    # exactly the first run's weights, so the training repeats exactly and resumes bit-exact
    # (the method's draws follow the global step)
    half = tmp_path / "half"
    train(compose_config("train", FAST + chosen + ["trainer.max_epochs=1", "test=false"], half, data_dir))
    train(compose_config("train", run + ["resume=auto", "test=false"], half, data_dir))
    assert_same_weights(last, half / "checkpoints" / "last.ckpt")


class InvertedCAM(Method):
    """A method defined outside camexp: CAM's training, the negated map (a worse localizer)."""

    name = "inverted"

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        if scale <= 0:
            raise MethodError(f"method.scale={scale!r} must be > 0.")
        self.scale = scale

    def maps(self, net, outputs, classes):
        return -self.scale * net.cams(outputs["features"], classes)


PLUGIN = ["method._target_=tests.methods.test_e2e.InvertedCAM", "+method.scale=2.0"]


@pytest.mark.slow
def test_a_method_plugs_in_through_target_without_touching_camexp(tmp_path: Path, data_dir: Path) -> None:
    run = FAST + ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    cam = train(compose_config("train", run, tmp_path / "cam", data_dir))
    inverted = train(compose_config("train", run + PLUGIN, tmp_path / "inv", data_dir))
    # same training (its loss is CAM's), another map: classification equal, localization not
    assert inverted["test/acc_top1"] == cam["test/acc_top1"]
    assert inverted["train/loss"] == cam["train/loss"]
    assert inverted["test/MaxBoxAccV2"] != cam["test/MaxBoxAccV2"]


def test_bad_method_settings_and_placements_are_named(tmp_path: Path, data_dir: Path) -> None:
    cases = [
        (["method=adl", "method.drop_rate=1.5"], "method.drop_rate=1.5 is not allowed for method=adl"),
        (["method=has", "method.grid_size=-2"], "method.grid_size=-2 is not allowed for method=has"),
        (["method=acol", "model=googlenet_gap", "model.pretrained=false"],
         "method=acol defines its layer placements for model.arch in"),
        (["method=spg", "model=alexnet_gap", "model.pretrained=false"], "not for 'alexnet'"),
        ([*PLUGIN[:1], "+method.scale=-1"], "method.scale=-1 must be > 0"),
    ]
    for overrides, message in cases:
        cfg = compose_config("train", overrides, tmp_path / "run", data_dir)
        with pytest.raises(MethodError) as error:
            validate(cfg)
        assert message in str(error.value), (overrides, str(error.value))


def test_pictures_draw_the_methods_own_map(tmp_path: Path, data_dir: Path) -> None:
    """ACoL's pictures show its fused map (max of A's and B's normalized maps), not A's CAM."""
    from camexp.callbacks.cam_pictures import CAMPictures
    from camexp.methods.acol import fuse

    cfg = compose_config("train", FAST + ["method=acol"], tmp_path / "run", data_dir)
    module = instantiate(cfg.model, _convert_="all")
    module.eval()
    torch.manual_seed(0)
    batch = {"input": torch.randn(3, 3, 56, 56), "label": torch.tensor([0, 4, 2]),
             "image": torch.zeros(3, 3, 56, 56, dtype=torch.uint8), "index": torch.arange(3),
             "image_id": ["a", "b", "c"], "boxes": torch.zeros(3, 1, 4), "num_boxes": torch.ones(3, dtype=torch.long)}
    with torch.no_grad():
        outputs = module.method.forward(module.net, batch["input"], batch["label"])
    pictures = CAMPictures(str(tmp_path / "pictures"), num_images=3, top_k=2)
    pictures.chosen = {0: 0, 1: 1, 2: 2}
    pictures.samples = []
    pictures.on_test_batch_end(None, module, outputs, batch, 0)
    classes = torch.cat([batch["label"][:, None], outputs["logits"].softmax(1).topk(2, dim=1).indices], 1)
    net = module.net
    maps_b = torch.einsum("bkc,bchw->bkhw", net.method_layers["classifier_b"].weight[classes], outputs["features_b"])
    expected = fuse(net.cams(outputs["features"], classes), maps_b)
    drawn = torch.stack([torch.from_numpy(sample["cams"]) for sample in pictures.samples])
    torch.testing.assert_close(drawn, expected)
    assert not torch.allclose(drawn, net.cams(outputs["features"], classes))


@pytest.mark.slow
def test_adl_killed_mid_epoch_resumes_bit_exact(tmp_path: Path, data_dir: Path) -> None:
    """ADL draws inside the forward pass: after a SIGKILL mid-epoch and resume=auto, the run
    ends with exactly the weights of an uninterrupted one (the draws follow the global step)."""
    import signal

    from tests.helpers.runs import signal_at, train_cli

    whole = train_cli(tmp_path / "whole", data_dir, "method=adl", "test=false")
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = train_cli(tmp_path / "killed", data_dir, "method=adl", "test=false", *signal_at(7, "SIGKILL"))
    assert killed.returncode == -signal.SIGKILL
    resumed = train_cli(tmp_path / "killed", data_dir, "method=adl", "test=false", "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(tmp_path / "whole/checkpoints/last.ckpt", tmp_path / "killed/checkpoints/last.ckpt")

"""model.channels_last and model.compile: same logits, CAMs, method outputs and gradients as
the plain network; the GPU presets turn channels-last on; a failed compile is a UserError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camexp.core.errors import CompileError, exit_on_user_error
from camexp.modules.cam_classifier import CAMClassifier
from tests.helpers.configs import compose_config

ADL = {"_target_": "camexp.methods.adl.ADL", "drop_rate": 0.5, "threshold": 0.9}


def _pair(method=None, **speed) -> tuple[CAMClassifier, CAMClassifier]:
    """The same tiny network twice (same seed): plain, and with the speed settings."""
    models = []
    for kwargs in ({}, speed):
        torch.manual_seed(0)
        models.append(CAMClassifier("tiny", 5, head={"num_convs": 1, "width": 16}, method=method,
                                    **kwargs))
    return models[0], models[1]


def _batch(batch: int = 2, size: int = 32) -> dict:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    return {"image": images, "label": torch.arange(batch) % 5}


def _compare(plain: CAMClassifier, fast: CAMClassifier, tol: float = 1e-4) -> None:
    """Train-mode outputs, loss and gradients, then eval-mode logits and class maps."""
    for model in (plain, fast):
        model.on_after_batch_transfer(batch := _batch(), 0)
        model.train()
        model.method.rng = np.random.default_rng(7)
        model._out = model.method.forward(model.net, batch["input"], batch["label"])
        model.method.loss(model.net, model._out, batch).backward()
        model._batch = batch
    for key in plain._out:
        torch.testing.assert_close(fast._out[key], plain._out[key], atol=tol, rtol=tol)
    for (name, p), (_, q) in zip(plain.net.named_parameters(), fast.net.named_parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=tol, rtol=1e-3, msg=name)
    classes = torch.tensor([[0, 3], [1, 4]])
    maps = []
    for model in (plain, fast):
        model.eval()
        with torch.no_grad():
            out = model.method.forward(model.net, model._batch["input"], model._batch["label"])
            maps.append((out["logits"], model.class_maps(out, classes)))
    torch.testing.assert_close(maps[1][0], maps[0][0], atol=tol, rtol=tol)
    torch.testing.assert_close(maps[1][1], maps[0][1], atol=tol, rtol=tol)
    assert maps[0][1].shape == (2, 2, 4, 4)  # 32 px at stride 8


def test_channels_last_same_outputs_cams_and_gradients() -> None:
    plain, fast = _pair(ADL, channels_last=True)
    conv = fast.net.trunk.features.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = fast.on_after_batch_transfer(_batch(), 0)
    assert batch["input"].is_contiguous(memory_format=torch.channels_last)
    _compare(plain, fast)
    # the settings are run-time ones: the checkpoint's hyper-parameters do not hold them
    assert "channels_last" not in fast.hparams and "compile" not in fast.hparams
    assert fast.net.state_dict().keys() == plain.net.state_dict().keys()


@pytest.mark.slow
def test_compile_same_outputs_cams_and_gradients() -> None:
    """ADL's network: its inserted layers (numpy draws inside the compiled trunk: graph breaks)
    in training, and at evaluation the CAMs of the default ``maps`` hook (about 40 s of
    inductor compiling on 2 CPU cores)."""
    plain, fast = _pair(ADL, channels_last=True, compile=True)
    _compare(plain, fast)
    # compiled in place: the state-dict keys (and so checkpoints) are the plain network's
    assert fast.net.state_dict().keys() == plain.net.state_dict().keys()


def test_compile_failure_is_a_user_error_naming_the_fix(capsys) -> None:
    model = CAMClassifier("tiny", 5, head={"num_convs": 1, "width": 16}, method=ADL, compile=True)

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")

    model.net.trunk.compile(backend=broken_backend)
    batch = model.on_after_batch_transfer(_batch(), 0)

    def step():
        with model._compile_errors():
            model.net(batch["input"])

    with pytest.raises(CompileError) as caught:
        step()
    message = str(caught.value)
    assert "model.compile=false" in message and "method=adl" in message
    assert "no C++ compiler found" in message and "\n" not in message
    with pytest.raises(SystemExit) as exited:
        exit_on_user_error(step)
    assert exited.value.code == 2
    assert "CompileError" in capsys.readouterr().err


@pytest.mark.parametrize(("trainer", "expected"), [("cpu", False), ("gpu", True), ("ddp", True)])
def test_gpu_presets_turn_channels_last_on(tmp_path, trainer, expected) -> None:
    cfg = compose_config("train", [f"trainer={trainer}"], tmp_path / "out", tmp_path / "data")
    assert cfg.model.channels_last is expected and cfg.model.compile is False
    assert "channels_last" not in cfg.trainer  # Trainer kwargs only
    off = compose_config("train", [f"trainer={trainer}", "model.channels_last=false"],
                         tmp_path / "out", tmp_path / "data")
    assert off.model.channels_last is False


@pytest.mark.parametrize(("override", "message"), [
    ("model.compile=yes", r"model.compile='yes' must be true or false"),
    ("data.decode_device=gpu", r"data.decode_device='gpu' is not allowed; use one of \['cpu', 'cuda'\]"),
])
def test_speed_settings_are_validated(tmp_path, override, message) -> None:
    from camexp.config.validate import validate
    from camexp.core.errors import ConfigError

    cfg = compose_config("train", [override], tmp_path / "out", tmp_path / "data")
    with pytest.raises(ConfigError, match=message):
        validate(cfg)

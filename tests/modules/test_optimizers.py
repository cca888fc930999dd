"""``model.optim.name=adamw`` (the transformer papers' optimizer, for every model) and the
multi-step schedule; SGD stays the default and unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from camexp.config.validate import validate
from camexp.core.errors import ConfigError
from camexp.modules.cam_classifier import CAMClassifier
from camexp.modules.optimizers import no_decay_parameters
from tests.helpers.configs import compose_config

ADAMW = {"name": "adamw", "lr": 5e-5, "weight_decay": 0.05, "eps": 1e-8, "betas": [0.9, 0.999],
         "head_lr_mult": 2.0}


def _groups(module: CAMClassifier) -> dict[tuple[float, float], set[str]]:
    """(lr, weight decay) -> the names of the parameters the optimizer's group holds."""
    names = {id(p): name for name, p in module.net.named_parameters()}
    optimizer = module.configure_optimizers()
    return {(group["lr"], group["weight_decay"]): {names[id(p)] for p in group["params"]}
            for group in optimizer.param_groups}


def test_adamw_leaves_biases_norms_position_embedding_and_tokens_without_decay() -> None:
    module = CAMClassifier("minivit", 4, head={"num_convs": 0}, optim=ADAMW,
                           method={"_target_": "camexp.methods.sat.SAT"}, backbone={"img_size": 32})
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["eps"] == 1e-8 and optimizer.defaults["betas"] == (0.9, 0.999)
    groups = _groups(module)
    assert set(groups) == {(5e-5, 0.05), (5e-5, 0.0), (1e-4, 0.05), (1e-4, 0.0)}
    trunk_kept = groups[(5e-5, 0.0)]
    assert {"trunk.vit.pos_embed", "trunk.vit.cls_token", "trunk.vit.blocks.0.norm1.weight",
            "trunk.vit.blocks.0.attn.qkv.bias", "trunk.vit.norm.bias"} <= trunk_kept
    assert all(name.endswith((".bias", ".weight", "pos_embed", "cls_token")) for name in trunk_kept)
    assert not any(name.endswith(("qkv.weight", "fc1.weight", "proj.weight")) for name in trunk_kept)
    assert "trunk.vit.blocks.0.attn.qkv.weight" in groups[(5e-5, 0.05)]
    # the new layers at head_lr_mult: the class convolution decays, its bias and SAT's token do not
    assert groups[(1e-4, 0.05)] == {"head.classes.weight"}
    assert groups[(1e-4, 0.0)] == {"head.classes.bias", "method_layers.token", "method_layers.position"}


def test_adamw_on_a_cnn_and_sgd_unchanged() -> None:
    cnn = CAMClassifier("tiny", 3, head={"num_convs": 1, "width": 8}, optim=ADAMW)
    skip = no_decay_parameters(cnn.net)
    decayed = {name for name, p in cnn.net.named_parameters() if id(p) not in skip}
    assert decayed == {"trunk.features.conv1.weight", "trunk.features.conv2.weight", "trunk.features.conv3.weight",
                       "trunk.features.conv4.weight", "head.conv1.weight", "classifier.weight"}
    sgd = CAMClassifier("tiny", 3, head={"num_convs": 1, "width": 8},
                        optim={"lr": 0.02, "weight_decay": 1e-4, "head_lr_mult": 10.0})
    optimizer = sgd.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert [(g["lr"], g["weight_decay"], g["momentum"]) for g in optimizer.param_groups] == [
        (0.02, 1e-4, 0.9), (pytest.approx(0.2), 1e-4, 0.9)]  # every parameter decays, as before


def test_multistep_multiplies_by_gamma_at_each_milestone() -> None:
    module = CAMClassifier("tiny", 3, head={"num_convs": 1, "width": 8},
                           scheduler={"name": "multistep", "milestones": [10, 12], "gamma": 0.1})
    factors = [module.lr_factor(epoch) for epoch in (0, 9, 10, 11, 12, 19)]
    assert factors == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.optim.name=adam"], r"model.optim.name='adam' is not allowed; use one of \['adamw', 'sgd'\]"),
    (["model.scheduler.name=multistep"], r"model.scheduler.name=multistep needs a list of epochs"),
    (["model=minivit", "data.crop_size=96"], r"model.backbone.img_size=96 but data.crop_size=96 and "
                                             r"data.eval_size=\[112, 112\].*data.eval_size=\[96,96\]"),
    (["+model.backbone.drop_path=0.1"], r"model.backbone.drop_path is not a setting of model.arch='tiny'"),
])
def test_optimizer_schedule_and_backbone_settings_are_checked(overrides, message, tmp_path: Path) -> None:
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path / "data")
    with pytest.raises(ConfigError, match=message):
        validate(cfg)

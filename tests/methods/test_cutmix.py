"""CutMix (docs/methods.md): the box, the area weight lam', the pasted pixels and the mixed loss,
by hand and against torchvision's ``transforms.v2.CutMix``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from camexp.core.errors import MethodError
from camexp.methods.cutmix import CutMix, cutmix_box, paste_box


def _hand_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    log_p = logits.double() - torch.logsumexp(logits.double(), dim=1, keepdim=True)
    return -log_p[torch.arange(len(labels)), labels].mean()


# (lam, centre y, centre x, H, W) -> box (y0, y1, x0, x1); lam = 1 - r^2 with r exact in binary
@pytest.mark.parametrize(
    ("lam", "cy", "cx", "height", "width", "box"),
    [
        (0.75, 5, 5, 10, 10, (3, 7, 3, 7)),  # r = 0.5: sides 5 -> halves 2
        (0.4375, 8, 8, 16, 16, (2, 14, 2, 14)),  # r = 0.75: sides 12 -> halves 6
        (0.4375, 0, 15, 16, 16, (0, 6, 9, 16)),  # clipped at the top and the right
        (0.75, 3, 10, 8, 12, (1, 5, 7, 12)),  # H != W: halves 2 and 3, right edge clipped
        (0.5, 3, 3, 7, 7, (1, 5, 1, 5)),  # odd side: floor(7 * 0.7071) = 4 -> half 2
        (0.0, 5, 5, 10, 10, (0, 10, 0, 10)),  # lam 0: the whole image
        (0.0, 0, 0, 10, 10, (0, 5, 0, 5)),  # lam 0 from a corner: a quarter
        (0.999, 4, 6, 10, 10, (4, 4, 6, 6)),  # lam near 1: floor(10 * 0.0316) = 0, empty box
        (0.96, 4, 6, 10, 10, (3, 5, 5, 7)),  # r = 0.2: sides 2 -> halves 1
    ],
)
def test_cutmix_box_by_hand(lam, cy, cx, height, width, box):
    assert cutmix_box(lam, cy, cx, height, width) == box
    y0, y1, x0, x1 = box
    _, weight = paste_box(torch.zeros(2, 1, height, width), torch.tensor([1, 0]), box)
    assert weight == 1.0 - (y1 - y0) * (x1 - x0) / (height * width)


def test_paste_box_takes_the_box_from_the_permuted_image():
    images = torch.arange(4 * 2 * 6 * 5, dtype=torch.float32).reshape(4, 2, 6, 5)
    order = torch.tensor([2, 0, 3, 1])
    box = (1, 4, 2, 5)
    mixed, weight = paste_box(images, order, box)
    inside = torch.zeros(6, 5, dtype=torch.bool)
    inside[1:4, 2:5] = True
    for i in range(4):
        assert torch.equal(mixed[i][:, inside], images[order[i]][:, inside])
        assert torch.equal(mixed[i][:, ~inside], images[i][:, ~inside])
    assert weight == 1.0 - 9 / 30
    assert torch.equal(images, torch.arange(240, dtype=torch.float32).reshape(4, 2, 6, 5))  # not in place


def _batch(seed: int = 0, size=(12, 10), batch: int = 6, classes: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"input": torch.randn(batch, 3, *size, generator=g),
            "label": torch.randint(classes, (batch,), generator=g)}


@pytest.mark.parametrize("seed", range(8))
def test_transform_batch_replays_the_benchmark_draws_and_the_loss_is_the_weighted_ce(seed):
    batch = _batch(seed)
    images, labels = batch["input"].clone(), batch["label"].clone()
    method = CutMix(beta=1.0, prob=1.0)
    method.rng = np.random.default_rng(seed)
    out = method.transform_batch(batch)

    rng = np.random.default_rng(seed)
    assert rng.random() < 1.0
    lam = rng.beta(1.0, 1.0)
    order = rng.permutation(6)
    cy, cx = rng.integers(12), rng.integers(10)
    cut_h, cut_w = math.floor(12 * math.sqrt(1 - lam)), math.floor(10 * math.sqrt(1 - lam))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, 12)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, 10)
    expected = images.clone()
    expected[:, :, y0:y1, x0:x1] = images[order][:, :, y0:y1, x0:x1]
    assert torch.equal(out["input"], expected)
    assert torch.equal(out["mix_label"], labels[order])
    assert out["mix_weight"] == 1 - (y1 - y0) * (x1 - x0) / 120

    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(100 + seed))
    loss = method.loss(None, {"logits": logits}, out)
    weight = out["mix_weight"]
    by_hand = weight * _hand_ce(logits, labels) + (1 - weight) * _hand_ce(logits, labels[order])
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize(("beta", "prob"), [(1.0, 0.0), (0.0, 1.0)])
def test_prob_zero_or_beta_zero_leaves_the_batch_untouched(beta, prob):
    batch = _batch(3)
    images, labels = batch["input"].clone(), batch["label"].clone()
    method = CutMix(beta=beta, prob=prob)
    for seed in range(20):
        method.rng = np.random.default_rng(seed)
        out = method.transform_batch(batch)
        assert torch.equal(out["input"], images) and "mix_label" not in out and "mix_weight" not in out
    logits = torch.randn(6, 5)
    assert method.loss(None, {"logits": logits}, out).item() == pytest.approx(_hand_ce(logits, labels).item(), rel=1e-6)


def test_prob_mixes_that_share_of_batches():
    method = CutMix(beta=1.0, prob=0.3)
    mixed = 0
    for seed in range(2000):
        method.rng = np.random.default_rng(seed)
        mixed += "mix_label" in method.transform_batch(_batch(0, size=(4, 4), batch=2))
    assert abs(mixed / 2000 - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 2000)


@pytest.mark.parametrize(("kwargs", "key"), [({"beta": -1.0}, "method.beta"), ({"beta": "1"}, "method.beta"),
                                             ({"prob": 1.5}, "method.prob"), ({"prob": -0.5}, "method.prob")])
def test_bad_settings_raise_method_error(kwargs, key):
    with pytest.raises(MethodError, match=key.replace(".", r"\.")):
        CutMix(**kwargs)


# -- torchvision -------------------------------------------------------------------------


def _torchvision_draws(seed: int, alpha: float, height: int, width: int) -> tuple[float, int, int]:
    """Replay CutMix.make_params's draws from torch's global generator: lam, r_x, r_y."""
    torch.manual_seed(seed)
    lam = float(torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha])).sample(()))
    r_x = int(torch.randint(width, size=(1,)))
    r_y = int(torch.randint(height, size=(1,)))
    return lam, r_x, r_y


@pytest.mark.parametrize(("height", "width"), [(32, 32), (17, 23), (9, 14), (224, 224), (7, 5)])
@pytest.mark.parametrize("alpha", [1.0, 0.2])
def test_camexp_box_and_weight_equal_torchvisions_for_the_same_lam_and_centre(height, width, alpha):
    """torchvision's CutMix draws the box as the benchmark does (same box, same lam'), but
    pastes from ``batch.roll(1)``: with that order, camexp gives its images and its loss."""
    batch, classes = 5, 4
    tv_cutmix = v2.CutMix(alpha=alpha, num_classes=classes)
    g = torch.Generator().manual_seed(height * width)
    images = torch.randn(batch, 3, height, width, generator=g)
    labels = torch.randint(classes, (batch,), generator=g)
    logits = torch.randn(batch, classes, generator=g)
    roll = torch.arange(batch).roll(1)  # rolled[i] = batch[i - 1]
    weights = []
    for seed in range(40):
        lam, r_x, r_y = _torchvision_draws(seed, alpha, height, width)
        box = cutmix_box(lam, r_y, r_x, height, width)
        y0, y1, x0, x1 = box

        torch.manual_seed(seed)
        params = tv_cutmix.make_params([images])
        assert params["box"] == (x0, y0, x1, y1)
        mixed, weight = paste_box(images, roll, box)
        assert params["lam_adjusted"] == weight

        torch.manual_seed(seed)
        tv_images, tv_labels = tv_cutmix(images, labels)
        assert torch.equal(tv_images, mixed)
        # the soft labels are lam' one_hot(y) + (1 - lam') one_hot(y[i - 1]) ...
        hot = F.one_hot(labels, classes).double()
        assert torch.allclose(tv_labels.double(), weight * hot + (1 - weight) * hot[roll], atol=1e-6)
        # ... so their cross-entropy is camexp's CutMix loss with mix_label = y[roll]
        tv_loss = -(tv_labels * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        ours = CutMix().loss(None, {"logits": logits},
                             {"label": labels, "mix_label": labels[roll], "mix_weight": weight})
        assert ours.item() == pytest.approx(tv_loss.item(), rel=1e-5, abs=1e-6)
        weights.append(weight)
    if alpha < 1:  # lam near 1 draws empty boxes (lam' = 1), lam near 0 large ones
        assert max(weights) == 1.0 and min(weights) < 0.4

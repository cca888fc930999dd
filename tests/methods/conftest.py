"""Shared fixtures of the method tests: a VGG16 trunk built without torchvision's FC layers.

``tvm.vgg16()`` spends ~2 s initialising fc6-fc8 (120M parameters) that the cut trunk throws
away; the tests build VGG16 networks a dozen times, so they build the same ``features`` on the
CPU and leave the FC layers on the meta device. ``test_weights.py`` checks that this trunk has
exactly the real one's layers, parameter names and shapes.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision import models as tvm
from torchvision.models import vgg as tv_vgg

from camexp.models.backbones import BACKBONES


def vgg16_without_fc() -> torch.nn.Module:
    """torchvision's VGG16 with its conv layers on the CPU and its FC layers on meta."""
    with torch.device("meta"):
        model = tvm.vgg16(weights=None)
    model.features = tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=False)
    return model


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on these small tensors a second thread only adds OpenMP barriers,
    which cost ~10 ms per op on a loaded 2-core machine (3 us with one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fast_vgg16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``CAMNet("vgg16", ...)`` build its trunk without the FC layers (same trunk)."""
    spec = dataclasses.replace(BACKBONES["vgg16"], make_classifier=vgg16_without_fc)
    monkeypatch.setitem(BACKBONES, "vgg16", spec)


def meta_forward(net: torch.nn.Module, size: int = 224, batch: int = 2):
    """Run ``net.method.forward`` on the meta device: shapes (and hooks) without arithmetic."""
    net = net.to("meta")
    images = torch.empty(batch, 3, size, size, device="meta")
    labels = torch.zeros(batch, dtype=torch.long, device="meta")
    return net.method.forward(net, images, labels)

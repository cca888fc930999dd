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

from camexp.models.backbones import BACKBONES
from tests.helpers.models import vgg16_without_fc


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



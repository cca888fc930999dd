"""Shared fixtures of the method tests: a VGG16 trunk built without torchvision's FC layers.

``tvm.vgg16()`` spends ~2 s initialising fc6-fc8 (120M parameters) that the cut trunk throws
away; the tests build VGG16 networks a dozen times, so they build the same ``features`` on the
CPU and leave the FC layers on the meta device. ``test_weights.py`` checks that this trunk has
exactly the real one's layers, parameter names and shapes.
"""

from __future__ import annotations

import dataclasses

import pytest

from camexp.models.backbones import BACKBONES
from tests.helpers.models import vgg16_without_fc


@pytest.fixture(autouse=True)
def every_method_test_on_one_thread(one_thread):
    """Every method test runs on one intra-op thread (``one_thread``, tests/conftest.py)."""


@pytest.fixture
def fast_vgg16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``CAMNet("vgg16", ...)`` build its trunk without the FC layers (same trunk)."""
    spec = dataclasses.replace(BACKBONES["vgg16"], make_classifier=vgg16_without_fc)
    monkeypatch.setitem(BACKBONES, "vgg16", spec)



"""Each method's yaml names the method's own module; the names that older configs and
checkpoints store (``camexp.methods.ACoL``) still resolve to the same classes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

import camexp.methods
from camexp.methods import FORMER_NAMES
from camexp.methods.base import Method
from tests.helpers.configs import CONF_DIR

YAMLS = sorted(Path(CONF_DIR, "method").glob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_each_method_yaml_names_the_class_in_its_own_module(path: Path) -> None:
    node = OmegaConf.load(path)
    target = (node.get("method") or node)["_target_"]
    assert target.rsplit(".", 2)[:2] == ["camexp.methods", path.stem]
    assert issubclass(get_object(target), Method)


def test_every_former_name_resolves_to_the_yamls_class() -> None:
    targets = {}
    for path in YAMLS:
        node = OmegaConf.load(path)
        target = (node.get("method") or node)["_target_"]
        targets[target.rsplit(".", 1)[1]] = get_object(target)
    assert set(FORMER_NAMES) <= set(targets)  # the methods that existed when the names moved
    for name in FORMER_NAMES:
        assert get_object(f"camexp.methods.{name}") is targets[name]
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchMethod'"):
        camexp.methods.NoSuchMethod  # noqa: B018

"""Every Lightning hook that camexp overrides (callbacks, LightningModules, the run-settings
callback) says so with ``@override`` and is typed, so a hook renamed by Lightning or misspelled
here is caught by a type checker instead of never being called."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import lightning as L
import pytest

import camexp

PACKAGE = Path(camexp.__file__).parent


def _lightning_classes() -> list[type]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, (L.Callback, L.LightningModule)):
                found.append(cls)
    return found


CLASSES = _lightning_classes()


def _overridden(cls: type) -> dict[str, object]:
    """The functions ``cls`` defines that a Lightning base class defines too."""
    bases = [base for base in cls.__mro__[1:] if base.__module__.startswith(("lightning", "torch"))]
    return {name: member for name, member in vars(cls).items()
            if not name.startswith("__") and any(name in vars(base) for base in bases)
            and callable(getattr(member, "__func__", member))}


def test_the_walk_finds_the_callbacks_and_modules() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"CAMLocalization", "CAMPictures", "CAMClassifier", "TorchvisionClassifier",
            "RunSettings", "PreemptionCheckpoint", "CompactModelSummary"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_each_overridden_hook_is_marked_and_typed(cls: type) -> None:
    hooks = _overridden(cls)
    # a class with no hook of its own inherits them from a camexp class (TimmClassifier)
    inherited = any(_overridden(base) for base in cls.__mro__[1:] if base.__module__.startswith("camexp"))
    assert hooks or inherited, f"{cls.__name__} overrides no Lightning hook"
    for name, member in hooks.items():
        function = getattr(member, "__func__", member)
        assert getattr(function, "__override__", False), f"{cls.__name__}.{name} lacks @override"
        signature = inspect.signature(function)
        untyped = [p.name for p in signature.parameters.values()
                   if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        assert not untyped, f"{cls.__name__}.{name}: no type for {untyped}"
        assert signature.return_annotation is not inspect.Signature.empty, f"{cls.__name__}.{name}"

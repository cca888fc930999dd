"""The synthetic dataset's spec (sizes, class count, seed; its hash names the cached copy)
and its class folders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
from dataclasses import dataclass

import numpy as np

from camexp.data.synthetic.classes import CLASS_CATALOGUE

#: Bumped whenever the drawing or the files change, so cached copies of an older look are not reused
#: (the version is part of the cache folder's hash).
FORMAT_VERSION = 1
CUB_DIRNAME = "CUB_200_2011"
META_NAME = "synthetic.json"
FORMAT_NAME = "camexp-synthetic-cub"

# Objects in a two-object image may overlap by at most this fraction of the smaller one's area,
# so that both stay clearly visible and their boxes stay meaningful.
MAX_OVERLAP = 0.05


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that decides the dataset's content; its hash names the cache folder.

    Object sizes are the diameter of the object's bounding circle as a fraction of the image side,
    so a rotated object always fits. In two-object images both objects may be shrunk below
    ``min_object_frac`` when the drawn sizes leave no room to place them without heavy overlap.
    """

    num_classes: int = 10
    train_per_class: int = 60
    test_per_class: int = 20
    image_size: int = 128
    two_object_prob: float = 0.25
    min_object_frac: float = 0.3
    max_object_frac: float = 0.6
    seed: int = 0
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        # Coerce numpy scalars and ints given for float fields, so equal specs hash equally.
        for name in (
            "num_classes",
            "train_per_class",
            "test_per_class",
            "image_size",
            "seed",
            "jpeg_quality",
        ):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise ValueError(f"SyntheticSpec.{name} must be an integer, got {value!r}")
            try:
                object.__setattr__(self, name, operator.index(value))
            except TypeError:
                raise ValueError(
                    f"SyntheticSpec.{name} must be an integer, got {value!r}"
                ) from None
        for name in ("two_object_prob", "min_object_frac", "max_object_frac"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise ValueError(f"SyntheticSpec.{name} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"SyntheticSpec.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        n_max = len(CLASS_CATALOGUE)
        if not 2 <= self.num_classes <= n_max:
            raise ValueError(f"num_classes must be in [2, {n_max}], got {self.num_classes}")
        if self.train_per_class < 1:
            raise ValueError(f"train_per_class must be >= 1, got {self.train_per_class}")
        if self.test_per_class < 1:
            raise ValueError(f"test_per_class must be >= 1, got {self.test_per_class}")
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in [32, 1024] pixels, got {self.image_size}")
        if not 0.0 <= self.two_object_prob <= 1.0:
            raise ValueError(f"two_object_prob must be in [0, 1], got {self.two_object_prob}")
        if not 0.0 < self.min_object_frac <= self.max_object_frac <= 1.0:
            raise ValueError(
                "object fractions must satisfy 0 < min_object_frac <= max_object_frac <= 1, got "
                f"min_object_frac={self.min_object_frac}, max_object_frac={self.max_object_frac}"
            )
        if self.min_object_frac * self.image_size < 12:
            raise ValueError(
                f"min_object_frac * image_size = {self.min_object_frac * self.image_size:.1f} px "
                "is too small to draw a recognisable shape (need >= 12 px)"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in [1, 95], got {self.jpeg_quality}")

    @property
    def images_per_class(self) -> int:
        return self.train_per_class + self.test_per_class

    @property
    def num_images(self) -> int:
        return self.num_classes * self.images_per_class

    def to_dict(self) -> dict[str, int | float]:
        return dataclasses.asdict(self)


def spec_hash(spec: SyntheticSpec) -> str:
    """12 hex digits naming the cache folder; changes with the spec and with FORMAT_VERSION."""
    payload = json.dumps(
        {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "spec": spec.to_dict()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def class_dirs(spec: SyntheticSpec) -> list[str]:
    """CUB-style class folder names, e.g. ``001.Disc_Striped``."""
    return [f"{i + 1:03d}.{c.name}" for i, c in enumerate(CLASS_CATALOGUE[: spec.num_classes])]

"""The field's WSOL training methods (docs/methods.md), one file each, as small strategies.

``method=<name>`` picks ``conf/method/<name>.yaml``, whose ``_target_`` names the class in its
own module; each is a :class:`Method` whose hooks the network, the LightningModule and the
localization callback call:

- ``camexp.methods.cam.CAM`` (``cam``): plain CAM, every default (Zhou et al. 2016).
- ``camexp.methods.has.HideAndSeek`` (``has``): hides random patches of the training images.
- ``camexp.methods.cutmix.CutMix`` (``cutmix``): pastes boxes between training images, mixes
  the labels.
- ``camexp.methods.adl.ADL`` (``adl``): attention-based dropout layers inserted in the trunk.
- ``camexp.methods.acol.ACoL`` (``acol``): a second classifier on features erased by the
  first's map.
- ``camexp.methods.spg.SPG`` (``spg``): branches trained on seed masks from the classifier's
  own map.
- ``camexp.methods.fsl.FSL`` (``fsl``): the field's few-shot baseline, a foreground map trained
  on the val split's boxes (camexp's reading of an unreleased design).
- ``camexp.methods.bas.BAS`` (``bas``): a foreground generator trained so the background scores
  low through a frozen copy of the rest of the network (Wu et al. 2022).
- ``camexp.methods.nlccam.NLCCAM`` (``nlccam``): non-local blocks in a LeakyReLU VGG16, the map a
  rank-weighted sum of all class maps (Yang et al. 2020).

A new method is a module and a yaml; nothing here changes.
"""

from importlib import import_module
from typing import Any

from camexp.core.errors import MethodError
from camexp.methods.base import Method

# Configs and checkpoints written before each method's yaml named its module store these names
# (``camexp.methods.ACoL``): they resolve here, lazily, so those runs still evaluate and resume.
# Frozen: a new method is not added.
FORMER_NAMES = {
    "CAM": "camexp.methods.cam",
    "HideAndSeek": "camexp.methods.has",
    "CutMix": "camexp.methods.cutmix",
    "ADL": "camexp.methods.adl",
    "ACoL": "camexp.methods.acol",
    "SPG": "camexp.methods.spg",
    "FSL": "camexp.methods.fsl",
}


def __getattr__(name: str) -> Any:
    if name in FORMER_NAMES:
        return getattr(import_module(FORMER_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FORMER_NAMES", "Method", "MethodError"]

"""The field's WSOL training methods (docs/methods.md), one file each, as small strategies.

``method=<name>`` picks one (``conf/method/<name>.yaml``); each is a :class:`Method` whose
hooks the network, the LightningModule and the localization callback call:

- :class:`CAM` (``cam``): plain CAM, every default (Zhou et al. 2016).
- :class:`HideAndSeek` (``has``): hides random patches of the training images.
- :class:`CutMix` (``cutmix``): pastes boxes between training images, mixes the labels.
- :class:`ADL` (``adl``): attention-based dropout layers inserted in the trunk.
- :class:`ACoL` (``acol``): a second classifier on features erased by the first's map.
- :class:`SPG` (``spg``): branches trained on seed masks from the classifier's own map.
- :class:`FSL` (``fsl``): the field's few-shot baseline, a foreground map trained on the val
  split's boxes (camexp's reading of an unreleased design).
"""

from camexp.core.errors import MethodError
from camexp.methods.acol import ACoL
from camexp.methods.adl import ADL
from camexp.methods.base import Method
from camexp.methods.cam import CAM
from camexp.methods.cutmix import CutMix
from camexp.methods.fsl import FSL
from camexp.methods.has import HideAndSeek
from camexp.methods.spg import SPG

__all__ = ["ACoL", "ADL", "CAM", "FSL", "SPG", "CutMix", "HideAndSeek", "Method", "MethodError"]

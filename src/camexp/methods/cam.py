"""CAM (Zhou et al., CVPR 2016): plain cross-entropy on image labels; the map is
``M_c = sum_k w_k^c f_k`` of the head's features (docs/protocol.md). Every hook's default."""

from __future__ import annotations

from camexp.methods.base import Method


class CAM(Method):
    """The class activation map method: nothing changed, nothing added."""

    name = "cam"

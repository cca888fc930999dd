"""CAM networks: torchvision trunks cut for CAM, a GAP/GMP head, and weight loading."""

from camexp.core.errors import WeightsError
from camexp.models.backbones import BACKBONES, BackboneSpec, Point
from camexp.models.cam_net import CAMNet, CAMOutput
from camexp.models.layers import POOLS, GlobalPool

__all__ = ["BACKBONES", "POOLS", "BackboneSpec", "CAMNet", "CAMOutput", "GlobalPool", "Point",
           "WeightsError"]

"""CAM networks: torchvision trunks cut for CAM, a GAP/GMP head, and weight loading."""

from camexp.models.backbones import BACKBONES, BackboneSpec
from camexp.models.cam_net import POOLS, CAMNet, CAMOutput, GlobalPool
from camexp.models.weights import WeightsError

__all__ = ["BACKBONES", "POOLS", "BackboneSpec", "CAMNet", "CAMOutput", "GlobalPool", "WeightsError"]

"""CAM networks: torchvision trunks cut for CAM, a head with its global pooling (GAP, GMP,
log-sum-exp, WILDCAT), and weight loading."""

from camexp.core.errors import WeightsError
from camexp.models.backbones import BACKBONES, BackboneSpec, Point
from camexp.models.cam_net import CAMNet, CAMOutput
from camexp.models.layers import POOL_SETTINGS, POOLS, GlobalPool, make_pool

__all__ = ["BACKBONES", "POOLS", "POOL_SETTINGS", "BackboneSpec", "CAMNet", "CAMOutput", "GlobalPool",
           "Point", "WeightsError", "make_pool"]

"""Post-hoc class maps of the Grad-CAM family, computed by the ``grad-cam`` package.

The WSOL protocol normalizes, resizes and thresholds maps itself (docs/protocol.md), so the
metrics get each method's *raw* map at the target layer's resolution: the library's own
``get_cam_image`` (its channel weights times the activations, or its projection), with its
ReLU as a config option, and without the min-max scaling and the OpenCV resize to the input
that the library applies after it. FullGrad has no single target layer: its map is the
library's sum of per-layer maps at input resolution (each min-max scaled, as the method
defines it), again without the final scaling.

Each method's arithmetic is the library's. For the K classes of a batch (ground truth and
top-5) the images go forward once and backward once per class (the steps of the library's
``BaseCAM.forward``); test-time augmentation, FullGrad and Shapley-CAM take the library's
own call once per class. Parameter gradients the backward passes accumulate are put back as
they were, so a validation pass during training leaves the optimizer's gradients alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class MethodSpec:
    """One post-hoc method: the library class, and what it costs per map."""

    class_name: str
    gradients: bool  # one backward pass per map
    extra_passes: str  # forward passes besides the one of the image
    class_specific: bool = True  # False: the same map for every class


POSTHOC_METHODS: dict[str, MethodSpec] = {
    "gradcam": MethodSpec("GradCAM", True, "none"),
    "hirescam": MethodSpec("HiResCAM", True, "none"),
    "gradcamelementwise": MethodSpec("GradCAMElementWise", True, "none"),
    "xgradcam": MethodSpec("XGradCAM", True, "none"),
    "gradcampp": MethodSpec("GradCAMPlusPlus", True, "none"),
    "layercam": MethodSpec("LayerCAM", True, "none"),
    "eigengradcam": MethodSpec("EigenGradCAM", True, "none"),
    "shapleycam": MethodSpec("ShapleyCAM", True, "none (plus a Hessian-vector product)"),
    "fullgrad": MethodSpec("FullGrad", True, "none (gradients of every bias layer and the input)"),
    "randomcam": MethodSpec("RandomCAM", True, "none (random channel weights: a floor)"),
    "scorecam": MethodSpec("ScoreCAM", False, "one per channel of the target layer"),
    "ablationcam": MethodSpec("AblationCAM", False, "one per channel of the target layer"),
    "eigencam": MethodSpec("EigenCAM", False, "none", class_specific=False),
    "kpcacam": MethodSpec("KPCA_CAM", False, "none", class_specific=False),
    "fem": MethodSpec("FEM", False, "none", class_specific=False),
}
# methods whose cost is one forward pass per channel: they get a progress bar of their own
PER_CHANNEL = ("scorecam", "ablationcam")
AUG_SMOOTH_PASSES = 6  # the library's test-time augmentation: 2 flips x 3 brightness factors


def _raw_class(base: type) -> type:
    """A subclass of the library's ``base`` whose output is the raw map (see module doc)."""
    from pytorch_grad_cam import FullGrad
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    full_grad = issubclass(base, FullGrad)

    class RawMap(base):  # type: ignore[misc, valid-type]
        relu: bool = True

        def forward(self, input_tensor, targets, eigen_smooth=False):
            # the hooks are removed while a method runs its own forward passes (Score-CAM,
            # Ablation-CAM): put them back for this image batch's pass
            if not self.activations_and_grads.handles:
                self.activations_and_grads = ActivationsAndGradients(
                    self.model, self.target_layers, self.reshape_transform, self.detach)
            return super().forward(input_tensor, targets, eigen_smooth)

        def forward_columns(self, input_tensor, columns, eigen_smooth=False):
            """:meth:`forward` for several target lists: one forward pass of the images,
            then per list one backward pass and the maps (BaseCAM.forward's steps)."""
            if not self.activations_and_grads.handles:
                self.activations_and_grads = ActivationsAndGradients(
                    self.model, self.target_layers, self.reshape_transform, self.detach)
            input_tensor = input_tensor.to(self.device)
            outputs = self.activations_and_grads(input_tensor)
            results = []
            for targets in columns:
                if self.uses_gradients:
                    self.activations_and_grads.gradients = []
                    loss = sum(target(output) for target, output in zip(targets, outputs, strict=True))
                    loss.backward(retain_graph=True)
                cams = self.compute_cam_per_layer(input_tensor, targets, eigen_smooth)
                results.append(self.aggregate_multi_layers(cams))
            return results

        def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
            if full_grad:
                return super().compute_cam_per_layer(input_tensor, targets, eigen_smooth)
            saved = self.activations_and_grads
            if self.detach:
                activations = [a.cpu().data.numpy() for a in saved.activations]
                grads = [g.cpu().data.numpy() for g in saved.gradients]
            else:
                activations, grads = list(saved.activations), list(saved.gradients)
            for handle in saved.handles:  # no copies of the method's own forward passes
                handle.remove()
            saved.handles.clear()
            maps = []
            for index, layer in enumerate(self.target_layers):
                cam = self.get_cam_image(input_tensor, layer, targets, activations[index],
                                         grads[index] if index < len(grads) else None, eigen_smooth)
                maps.append(np.maximum(cam, 0) if self.relu else cam)
            return [cam[:, None] for cam in maps]

        def aggregate_multi_layers(self, cam_per_target_layer):
            if full_grad:  # one (B, 1, H, W) array: the per-layer maps already summed
                return np.asarray(cam_per_target_layer).sum(axis=1)
            return np.concatenate(cam_per_target_layer, axis=1).mean(axis=1)

    RawMap.__name__ = f"Raw{base.__name__}"
    return RawMap


class _ChunkProgress:
    """Stands in for the ``tqdm`` module inside Score-CAM/Ablation-CAM: their per-image bars
    become steps of one bar over the whole batch (with its time estimate)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def tqdm(self, iterable, *args, **kwargs) -> Iterator:
        for item in iterable:
            yield item
            self.bar.update(1)


@contextmanager
def _quiet_library_bars(bar: Any) -> Iterator[None]:
    from pytorch_grad_cam import ablation_cam, score_cam

    saved = score_cam.tqdm, ablation_cam.tqdm
    score_cam.tqdm = ablation_cam.tqdm = _ChunkProgress(bar)
    try:
        yield
    finally:
        score_cam.tqdm, ablation_cam.tqdm = saved


@contextmanager
def _parameter_grads_kept(net: nn.Module) -> Iterator[None]:
    """The library calls ``loss.backward()``: keep the parameters' ``.grad`` as they were."""
    params = [p for p in net.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        yield
    finally:
        for p, grad in zip(params, saved, strict=True):
            p.grad = grad


def _no_inplace(net: nn.Module) -> None:
    """In-place activations after the target layer would overwrite the saved activations
    (on CPU the library's copy shares memory): run them out of place (same values)."""
    for module in net.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False


class PosthocMaps:
    """Raw maps (B, K, h, w) of ``classes`` (B, K) by one of :data:`POSTHOC_METHODS`.

    Args:
        net: images (B, 3, H, W) -> logits (B, C).
        method: a key of :data:`POSTHOC_METHODS`.
        target_layer: the module whose output is explained (ignored by FullGrad).
        relu: the library's ReLU on the map (on in every method of the library).
        aug_smooth: the library's test-time augmentation smoothing (6 passes per map).
        eigen_smooth: the library's first-principal-component smoothing.
        batch_size: forward passes per chunk for Score-CAM and Ablation-CAM.
    """

    def __init__(self, net: nn.Module, method: str, target_layer: nn.Module, relu: bool = True,
                 aug_smooth: bool = False, eigen_smooth: bool = False, batch_size: int = 32) -> None:
        import pytorch_grad_cam

        if method not in POSTHOC_METHODS:
            raise ValueError(f"method={method!r}; use one of {sorted(POSTHOC_METHODS)}.")
        self.net, self.method, self.spec = net, method, POSTHOC_METHODS[method]
        self.aug_smooth, self.eigen_smooth = aug_smooth, eigen_smooth
        _no_inplace(net)
        cls = _raw_class(getattr(pytorch_grad_cam, self.spec.class_name))
        layers = [] if method == "fullgrad" else [target_layer]
        if method == "ablationcam":
            self.cam = cls(net, layers, batch_size=batch_size)
        else:
            self.cam = cls(net, layers)
            self.cam.batch_size = batch_size  # Score-CAM reads it (16 otherwise)
        self.cam.relu = relu
        self.batch_size = batch_size
        # one forward pass for all classes, except where the library's own path differs:
        # test-time augmentation, FullGrad's input gradients, Shapley-CAM's second-order graph
        self.one_pass = not aug_smooth and method not in ("fullgrad", "shapleycam")

    def passes_per_map(self, channels: int) -> int:
        """Forward chunks one map costs Score-CAM/Ablation-CAM (the progress bar's unit)."""
        per_map = math.ceil(channels / self.batch_size) if self.method in PER_CHANNEL else 0
        return per_map * (AUG_SMOOTH_PASSES if self.aug_smooth else 1)

    def __call__(self, inputs: Tensor, classes: Tensor, bar: Any | None = None) -> Tensor:
        """``bar`` (a tqdm bar) advances by one per forward chunk of Score-CAM/Ablation-CAM."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        columns = range(classes.shape[1]) if self.spec.class_specific else range(1)
        with torch.enable_grad(), _parameter_grads_kept(self.net), \
                _quiet_library_bars(bar if bar is not None else _NullBar()):
            targets = [[ClassifierOutputTarget(int(c)) for c in classes[:, k].tolist()]
                       for k in columns]
            if self.one_pass:
                outs = self.cam.forward_columns(inputs, targets, eigen_smooth=self.eigen_smooth)
            else:
                outs = [self.cam(inputs, column, aug_smooth=self.aug_smooth,
                                 eigen_smooth=self.eigen_smooth) for column in targets]
            maps = [torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)) for out in outs]
        stacked = torch.stack(maps, dim=1).to(inputs.device)
        if not self.spec.class_specific:
            stacked = stacked.expand(-1, classes.shape[1], -1, -1)
        return stacked

    def close(self) -> None:
        """Remove the library's hooks from the network."""
        self.cam.activations_and_grads.release()


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

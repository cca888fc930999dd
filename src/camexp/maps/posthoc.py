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
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from typing_extensions import override

from camexp.maps.sources import MapSettings, MapSource
from camexp.maps.target_layers import Reshape, camnet_default, resolve_target_layer
from camexp.models.vit import token_layout

if TYPE_CHECKING:
    import lightning as L

AUG_SMOOTH_PASSES = 6  # the library's test-time augmentation: 2 flips x 3 brightness factors


class PosthocSource(MapSource):
    """A post-hoc method of the ``grad-cam`` package as a map source: the raw map of a target
    layer (``localization.target_layer``, else the network's default), for any trained or
    torchvision network. Each method is a subclass naming the library's class and what one
    map costs; the few whose library object is built otherwise override :meth:`library_cam`.
    """

    library_class: ClassVar[str]
    gradients: ClassVar[bool] = True  # one backward pass per map
    extra_passes: ClassVar[str] = "none"  # forward passes besides the one of the image
    class_specific: ClassVar[bool] = True  # False: the same map for every class
    per_channel: ClassVar[bool] = False  # one forward pass per channel: a progress bar
    one_pass: ClassVar[bool] = True  # every class from one forward pass of the images

    def __init__(self, settings: MapSettings | None = None) -> None:
        super().__init__(settings)
        self.engine: PosthocMaps | None = None

    @classmethod
    def library_cam(cls, net: nn.Module, layer: nn.Module, batch_size: int,
                    reshape: Reshape | None = None) -> Any:
        """The library's method object (its raw-map subclass) on ``layer`` of ``net``;
        ``reshape`` turns a transformer layer's tokens into their grid."""
        import pytorch_grad_cam

        cam = _raw_class(getattr(pytorch_grad_cam, cls.library_class))(net, [layer], reshape_transform=reshape)
        cam.batch_size = batch_size  # Score-CAM reads it (16 otherwise)
        return cam

    @classmethod
    def explains(cls, layer: str, channels: int) -> str:
        """What the method explains, for the line printed at the start."""
        return f"target layer {layer!r}, {channels} channels"

    @override
    def start(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Resolve and check the target layer, build the method, say what it costs."""
        self.close()  # an engine left by a sanity check (it has no epoch end)
        net, size = pl_module.net, tuple(trainer.datamodule.eval_transform.size)
        own_default = getattr(pl_module, "default_target_layer", None)
        default = own_default() if callable(own_default) else camnet_default(net)
        what = getattr(pl_module, "network_name", type(net).__name__)
        settings = self.settings
        layout = token_layout(net)  # a transformer: its tokens reshaped to their grid
        reshape = layout.to_map if layout is not None else None
        name, layer, channels = resolve_target_layer(net, settings.target_layer, default, size, what,
                                                     device=pl_module.device, reshape=reshape)
        self.engine = PosthocMaps(net, self.name, layer, relu=settings.relu,
                                  aug_smooth=settings.aug_smooth, eigen_smooth=settings.eigen_smooth,
                                  batch_size=settings.batch_size, reshape=reshape)
        self.channels, self.trainer = channels, trainer
        if trainer.is_global_zero and not trainer.sanity_checking:
            cost = f"extra forward passes per map: {self.extra_passes}"
            if self.per_channel:
                batches = trainer.num_test_batches if stage == "test" else trainer.num_val_batches
                cost += (f" = {channels}, in chunks of {settings.batch_size}; 6 maps per image "
                         f"(ground truth + top-5), {sum(batches)} batches: a progress bar per batch")
            print(f"localization.method={self.name} ({stage}): {self.explains(name, channels)}; "
                  f"gradients: {self.gradients}; {cost}.")

    @override
    def class_maps(self, pl_module: L.LightningModule, outputs: dict[str, Tensor],
                   batch: dict[str, Any], classes: Tensor) -> Tensor:
        with self._progress(classes) as bar:
            return self.engine(batch["input"], classes, bar)

    def _progress(self, classes: Tensor):
        """A bar over the forward chunks of this batch, with its time estimate (Score-CAM and
        Ablation-CAM only; rank 0)."""
        from tqdm.auto import tqdm

        total = classes.numel() * self.engine.passes_per_map(self.channels)
        # always on rank 0: these methods take minutes a batch. On a terminal the bar clears
        # itself; in a log file it keeps its final line and redraws at most every 30 s.
        if not total or not self.trainer.is_global_zero:
            return nullcontext(None)
        terminal = sys.stderr.isatty()
        return tqdm(total=total, desc=f"{self.name} forward chunks", leave=not terminal, unit="chunk",
                    dynamic_ncols=True, mininterval=0.1 if terminal else 30.0)

    @override
    def close(self) -> None:
        super().close()
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def _method(name: str, library_class: str, **costs: Any) -> type[PosthocSource]:
    """The source of a post-hoc method that needs only its library class and its costs."""
    return type(library_class, (PosthocSource,),
                {"name": name, "library_class": library_class, "__module__": __name__, **costs})


class FullGrad(PosthocSource):
    """FullGrad explains every bias layer and the input, not one target layer."""

    name, library_class = "fullgrad", "FullGrad"
    extra_passes = "none (gradients of every bias layer and the input)"
    one_pass = False  # its input gradients: the library's call per class

    @classmethod
    @override
    def library_cam(cls, net: nn.Module, layer: nn.Module, batch_size: int,
                    reshape: Reshape | None = None) -> Any:
        import pytorch_grad_cam

        return _raw_class(pytorch_grad_cam.FullGrad)(net, [])

    @classmethod
    @override
    def explains(cls, layer: str, channels: int) -> str:
        return "target layer every bias layer"


PER_CHANNEL_COST = {"gradients": False, "per_channel": True,
                    "extra_passes": "one per channel of the target layer"}
CLASS_AGNOSTIC = {"gradients": False, "class_specific": False}


class AblationCAM(PosthocSource):
    """Ablation-CAM takes its chunk size in its constructor."""

    name, library_class = "ablationcam", "AblationCAM"
    gradients, per_channel, extra_passes = False, True, PER_CHANNEL_COST["extra_passes"]

    @classmethod
    @override
    def library_cam(cls, net: nn.Module, layer: nn.Module, batch_size: int,
                    reshape: Reshape | None = None) -> Any:
        import pytorch_grad_cam
        from pytorch_grad_cam.ablation_layer import AblationLayerVit

        # a transformer layer's tokens are ablated per channel with the library's ViT layer
        ablation = {"reshape_transform": reshape, "ablation_layer": AblationLayerVit()} if reshape else {}
        return _raw_class(pytorch_grad_cam.AblationCAM)(net, [layer], batch_size=batch_size, **ablation)


POSTHOC_METHODS: dict[str, type[PosthocSource]] = {cls.name: cls for cls in (
    _method("gradcam", "GradCAM"),
    _method("hirescam", "HiResCAM"),
    _method("gradcamelementwise", "GradCAMElementWise"),
    _method("xgradcam", "XGradCAM"),
    _method("gradcampp", "GradCAMPlusPlus"),
    _method("layercam", "LayerCAM"),
    _method("eigengradcam", "EigenGradCAM"),
    # its second-order graph: the library's call per class
    _method("shapleycam", "ShapleyCAM", extra_passes="none (plus a Hessian-vector product)",
            one_pass=False),
    FullGrad,
    _method("randomcam", "RandomCAM", extra_passes="none (random channel weights: a floor)"),
    _method("scorecam", "ScoreCAM", **PER_CHANNEL_COST),
    AblationCAM,
    _method("eigencam", "EigenCAM", **CLASS_AGNOSTIC),
    _method("kpcacam", "KPCA_CAM", **CLASS_AGNOSTIC),
    _method("fem", "FEM", **CLASS_AGNOSTIC),
)}
# methods whose cost is one forward pass per channel: they get a progress bar of their own
PER_CHANNEL = tuple(name for name, cls in POSTHOC_METHODS.items() if cls.per_channel)


def _raw_class(base: type) -> type:
    """A subclass of the library's ``base`` whose output is the raw map (see module doc)."""
    import pytorch_grad_cam as library
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    full_grad = issubclass(base, library.FullGrad)

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
        reshape: a transformer layer's tokens (B, N, D) -> their grid (B, D, h, w).
    """

    def __init__(self, net: nn.Module, method: str, target_layer: nn.Module, relu: bool = True,
                 aug_smooth: bool = False, eigen_smooth: bool = False, batch_size: int = 32,
                 reshape: Reshape | None = None) -> None:
        if method not in POSTHOC_METHODS:
            raise ValueError(f"method={method!r}; use one of {sorted(POSTHOC_METHODS)}.")
        self.net, self.method, self.spec = net, method, POSTHOC_METHODS[method]
        self.aug_smooth, self.eigen_smooth = aug_smooth, eigen_smooth
        _no_inplace(net)
        self.cam = self.spec.library_cam(net, target_layer, batch_size, reshape)
        self.cam.relu = relu
        self.batch_size = batch_size
        # one forward pass for all classes, except where the library's own path differs:
        # test-time augmentation, and the methods that need the library's call per class
        self.one_pass = not aug_smooth and self.spec.one_pass

    def passes_per_map(self, channels: int) -> int:
        """Forward chunks one map costs Score-CAM/Ablation-CAM (the progress bar's unit)."""
        per_map = math.ceil(channels / self.batch_size) if self.spec.per_channel else 0
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

"""The hooks a WSOL training method may fill, and the network surgery they share.

A method says, at most: how a training batch is changed (:meth:`Method.transform_batch`:
Hide-and-Seek, CutMix), which layers it inserts into the network or changes there
(:meth:`Method.edit`: ADL, the pools of ACoL and SPG), which layers it adds beside it
(:meth:`Method.branches`: ACoL's second classifier, SPG's branches), what one forward pass
gives (:meth:`Method.forward`), its loss (:meth:`Method.loss`) and its localization map
(:meth:`Method.maps`). CAM is the method that keeps every default. The network
(:class:`~camexp.models.CAMNet`) and the callbacks call these hooks and never ask which
method they hold, so a new method is one file and one yaml (``conf/method/``), wired by
Hydra's ``_target_``.

Random draws (hidden patches, CutMix boxes, ADL's choice) come from :attr:`Method.rng`, which
the LightningModule seeds before every training step from ``(seed, global step, rank)``: the
same numbers for the same run, and the same after a resume.

Where a method's layers go
--------------------------
A method never names a module path of a backbone. Backbones declare named points
(:mod:`camexp.models.backbones`: ``stage1`` ... ``stage5``, ``pool3``, ``stage4.first``,
``output``, ...; the network adds ``head.last``), and a method writes its placement in those
names, one per backbone family (:attr:`Method.placements`, keyed by
:attr:`~camexp.models.backbones.BackboneSpec.family`; the field states ADL's, ACoL's and SPG's
placements per family). Inside its hooks a method reaches a point with
``self.point(net, "stage4")``: a :class:`~camexp.models.backbones.Point` whose ``path`` is
the dotted path from the network (``"trunk.layer3"``) and ``channels`` its output's channels.
With that path it inserts a layer after the point (:func:`insert_after`), swaps the module
there (:func:`replace_layer`, same name so no parameter key moves), keeps its output during
each forward pass (:class:`FeatureTaps`), or reads the module (:func:`module_at`). A new
backbone of a known family therefore only declares its points; a method that needs a kind of
place no backbone declares yet adds the name to the backbones' vocabulary, not a path here
(a transformer's blocks, say, for a method that edits named blocks). A method that needs more
than a place (the block attentions, say) gets one more hook here, with a default, rather than
a branch on the backbone.

Two more helpers serve methods that need more than a layer at a point: :func:`apply_after`
runs a layer *with parameters* (kept beside the network in ``net.method_layers``, so the
trunk still loads torchvision's weights) on a point's output, and :func:`rest_of_network`
gives the network after a point (the trunk's later layers and the head) as one sequence,
which :func:`frozen_forward` runs with a frozen copy of the current weights (BAS's
background branch).
than a place (the rest of the network run from a point) gets one more hook here, with a
default, rather than a branch on the backbone.

Transformer backbones declare their blocks (``tokens``, ``block1`` ... ``blockN``, ``block-1``
for the last, ``block<n>.attention``; :meth:`Method.blocks` lists them in order): TS-CAM and SCM
read every block's attention weights through :class:`~camexp.models.attention.AttentionTaps` on
the ``.attention`` points, and SAT appends its token at ``tokens`` and gates the attention of
``block-3`` ... ``block-1``, as ADL inserts its layers after its points.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.errors import MethodError
from camexp.models.backbones import BACKBONES, Point

if TYPE_CHECKING:
    from camexp.models.cam_net import CAMNet

T = TypeVar("T")


class Method:
    """A WSOL training method as a few hooks; every default is plain CAM.

    Attributes:
        name: short name used in messages and reports.
        placements: the method's placement per backbone family (``BackboneSpec.family``), in
            point names; the backbones of other families are refused. None means the method
            does not touch the network and runs on any backbone.
        rng: the generator of this training step's random draws (set by the LightningModule).
    """

    name = "cam"
    placements: Mapping[str, Any] | None = None

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    # -- configuration ---------------------------------------------------------------------

    def check(self, arch: str) -> None:
        """Refuse a backbone where the method's stated placement does not exist."""
        if self.placements is not None and BACKBONES[arch].family not in self.placements:
            supported = sorted(name for name, spec in BACKBONES.items()
                               if spec.family in self.placements)
            raise MethodError(
                f"method={self.name} defines its layer placements for model.arch in "
                f"{supported}, not for {arch!r} (docs/methods.md states each method's "
                "placements). Pick one of those models, or another method (cam, has and cutmix "
                "run on every backbone)."
            )

    def placement(self, arch: str) -> Any:
        """The method's placement on backbone ``arch``: its entry for the backbone's family."""
        self.check(arch)
        return self.placements[BACKBONES[arch].family]

    def point(self, net: CAMNet, name: str) -> Point:
        """The network's point ``name`` (its path from ``net`` and its channels)."""
        points = net.points()
        if name in points:
            return points[name]
        if name.startswith("head."):
            raise MethodError(
                f"method={self.name} places a layer at {name!r} (the head's last layer) on "
                f"model.arch={net.arch!r}, but model.head.num_convs=0 leaves no head: set "
                "model.head.num_convs >= 1."
            )
        raise MethodError(
            f"method={self.name} places a layer at point {name!r}, which model.arch={net.arch!r} "
            f"does not declare (it declares {sorted(points)})."
        )

    # -- what a run's health checks may conclude (camexp.callbacks.health) ----------------

    #: whether training teaches the image-level classifier; a method that trains something else
    #: (FSL: a foreground map) leaves it at chance, which is then no sign of a collapsed run
    trains_classifier = True

    def chance_loss(self, num_classes: int) -> float | None:
        """The training loss of a network that learnt nothing (every class equally likely),
        which a collapsed run never leaves; None when the method's loss has no such value.
        The default loss's is ln(C); a method that overrides :meth:`loss` gets None unless it
        states its own."""
        return math.log(num_classes) if type(self).loss is Method.loss else None
    def blocks(self, net: CAMNet) -> list[str]:
        """The names of the network's blocks in the order they run, ``block1`` ... ``blockN``
        (the points a transformer backbone declares, :mod:`camexp.models.backbones`)."""
        points = net.points()
        count = 0
        while f"block{count + 1}" in points:
            count += 1
        if not count:
            raise MethodError(f"method={self.name} works on a transformer's blocks; model.arch="
                              f"{net.arch!r} declares none.")
        return [f"block{number}" for number in range(1, count + 1)]

    def head_shape(self, arch: str, num_convs: int, width: int) -> tuple[int, int]:
        """The (number of 3x3 convs, width) of the head on the trunk; the model's by default."""
        return num_convs, width

    # -- the network -----------------------------------------------------------------------

    def edit(self, net: CAMNet) -> None:
        """Insert or swap parameter-free layers in ``net.trunk``/``net.head`` (before the
        pretrained weights load: parameter names must not change)."""

    def branches(self, net: CAMNet) -> nn.Module | None:
        """Layers added beside the network (trained at the new layers' learning rate)."""
        return None

    # -- training --------------------------------------------------------------------------

    def transform_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Change a training batch (normalized ``batch["input"]`` (B, 3, H, W), ``label``)."""
        return batch

    def forward(self, net: CAMNet, images: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """One forward pass: at least ``logits`` (B, C) and ``features`` (B, K, h, w), the maps
        that feed the pooling. ``labels`` is the ground truth where known (training and
        evaluation), None for plain prediction."""
        features = net.features(images)
        return {"logits": net.classify(features), "features": features}

    def loss(self, net: CAMNet, outputs: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        """The training loss of one batch: cross-entropy on the image-level label."""
        return F.cross_entropy(outputs["logits"], batch["label"])

    # -- localization ----------------------------------------------------------------------

    def maps(self, net: CAMNet, outputs: dict[str, Tensor], classes: Tensor) -> Tensor:
        """Localization maps (B, K, h, w) of ``classes`` (B, K), from :meth:`forward`'s outputs
        of an evaluation batch: the class activation maps (docs/protocol.md)."""
        return net.cams(outputs["features"], classes)

    def checked(self, check: Callable[..., T], key: str, value: Any, **rule: Any) -> T:
        """``value`` of setting ``method.<key>`` through ``check`` (a :mod:`camexp.core.values`
        check), whose message names this method: ``check_fraction``, ``check_choice``, ..."""
        return check(f"method.{key}", value, MethodError, context=f"method={self.name}", **rule)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "rng")
        return f"{type(self).__name__}({settings})"


# -- helpers shared by methods ------------------------------------------------------------


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max normalize each map over its last two (spatial) axes to [0, 1]; a constant map
    becomes all zeros (the protocol's convention, docs/protocol.md)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    return (maps - low) / span.clamp_min(1e-12) * (span > 0)


def module_at(root: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted ``path`` (``"trunk.layer3.0"``), with a message if absent."""
    module = root
    for part in path.split("."):
        if part not in module._modules:
            raise MethodError(f"The network has no layer {path!r} (no {part!r} in it).")
        module = module._modules[part]
    return module


def insert_after(root: nn.Module, path: str, name: str, layer: nn.Module) -> None:
    """Insert ``layer`` as ``name`` right after the module at ``path`` in its parent
    ``nn.Sequential``. The other children keep their names, so no parameter key changes."""
    parent_path, _, child = path.rpartition(".")
    parent = module_at(root, parent_path) if parent_path else root
    if not isinstance(parent, nn.Sequential) or child not in parent._modules:
        raise MethodError(f"Cannot insert {name!r} after {path!r}: its parent is not a sequence.")
    if name in parent._modules:
        raise MethodError(f"Cannot insert {name!r} after {path!r}: the name is taken.")
    items = []
    for key, module in parent._modules.items():
        items.append((key, module))
        if key == child:
            items.append((name, layer))
    parent._modules = OrderedDict(items)


def replace_layer(root: nn.Module, path: str, layer: nn.Module) -> None:
    """Put ``layer`` in place of the module at ``path`` (same name, e.g. a pool of another size)."""
    parent_path, _, child = path.rpartition(".")
    parent = module_at(root, parent_path) if parent_path else root
    module_at(root, path)
    parent._modules[child] = layer


class FeatureTaps:
    """Keep the outputs of some of the network's layers during each forward pass.

    Forward hooks, so the network's structure and parameter names stay as they are. Read the
    outputs with ``taps[path]`` after the forward pass.
    """

    def __init__(self, root: nn.Module, paths: Iterable[str]) -> None:
        self.outputs: dict[str, Tensor] = {}
        for path in paths:
            module_at(root, path).register_forward_hook(self._keeper(path))

    def _keeper(self, path: str):
        def keep(module: nn.Module, inputs: Any, output: Tensor) -> None:
            self.outputs[path] = output

        return keep

    def __getitem__(self, path: str) -> Tensor:
        return self.outputs[path]


class OutputEdit:
    """A forward hook that replaces a module's output by ``layer(output)``. An object, not a
    closure, so a deep copy of the network copies the hook with the copy's own layer."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def __call__(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        return self.layer(output)


def apply_after(root: nn.Module, path: str, layer: nn.Module) -> None:
    """Run ``layer`` on the output of the module at ``path`` during every forward pass (a
    forward hook): the network's structure and parameter names stay as they are, so a layer
    with parameters kept in ``net.method_layers`` (NL-CCAM's non-local blocks) acts inside a
    trunk that still loads torchvision's weights."""
    module_at(root, path).register_forward_hook(OutputEdit(layer))


def rest_of_network(net: nn.Module, path: str) -> nn.Sequential:
    """The network after the point at ``path`` up to the head's output, as one sequence: in
    each sequence that holds the point, the layers after it (innermost first), then
    ``net.head``. The layers are the network's own (not copies) and the sequence is not
    registered in the network, so its parameters are counted once."""
    parts = path.split(".")
    levels, module = [], net
    for part in parts:
        levels.append((module, part))
        module = module_at(module, part)
    rest: list[nn.Module] = []
    for parent, child in reversed(levels[1:]):
        if not isinstance(parent, nn.Sequential):
            raise MethodError(f"The network after {path!r} cannot be run on its own: {child!r} "
                              "sits in a module that is not a sequence of layers.")
        names = list(parent._modules)
        rest += [parent._modules[name] for name in names[names.index(child) + 1:]]
    return nn.Sequential(*rest, net.head)


def frozen_forward(module: nn.Module, *inputs: Tensor) -> Tensor:
    """``module(*inputs)`` with a frozen copy of its current weights: every parameter detached
    (no gradient reaches it and it is in no optimizer's way) and every buffer cloned (batch-norm
    statistics of the live layers untouched), as a deep copy made at this step would run; the
    gradient still flows to the inputs."""
    state = {name: value.detach() for name, value in module.named_parameters()}
    state.update({name: value.clone() for name, value in module.named_buffers()})
    return torch.func.functional_call(module, state, inputs)

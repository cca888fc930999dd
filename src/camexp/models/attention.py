"""The attention weights of a transformer's blocks, read from timm's and torchvision's modules.

TS-CAM, SCM and attention rollout need each block's attention weights ``softmax(q k^T /
sqrt(d))`` (B, heads, N, N), after the softmax and before the attention dropout. Neither
library returns them: timm's ``Attention`` computes them only on its unfused path
(``fused_attn=False``; the fused kernel, ``scaled_dot_product_attention``, never materializes
them) and passes them to its ``attn_drop`` dropout module; torchvision's encoder calls
``nn.MultiheadAttention`` with ``need_weights=False``.

:class:`AttentionTaps` therefore, while it records: switches the chosen timm modules to their
unfused path (same arithmetic) and keeps the input of their ``attn_drop`` (a forward pre-hook),
or asks ``nn.MultiheadAttention`` for per-head weights (a pre-hook that sets
``need_weights=True, average_attn_weights=False``) and keeps them. Outside recording, the
modules run as before (fused). No module is replaced, so parameter names do not change.

A method that changes the weights (SAT's gating) gives an ``edit``: called per timm module
with the weights, the queries and keys (B, heads, N, d) and the scale, it returns the weights
the block then uses (dropout, then the product with the values).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

from camexp.core.errors import UserError

# (index of the module among the tapped ones, weights, queries, keys, scale) -> weights
AttentionEdit = Callable[[int, Tensor, Tensor, Tensor, float], Tensor]


def _timm_attention() -> tuple[type, ...]:
    """timm's attention class (none when timm was never imported: no timm module exists)."""
    module = sys.modules.get("timm.layers.attention")
    return (module.Attention,) if module is not None else ()


def attention_modules(net: nn.Module) -> list[nn.Module]:
    """The self-attention modules of ``net`` in the order their blocks run: timm's
    ``Attention`` or torchvision's ``nn.MultiheadAttention``."""
    kinds = (*_timm_attention(), nn.MultiheadAttention)
    return [module for module in net.modules() if isinstance(module, kinds)]


class AttentionTaps:
    """Keep (and optionally edit) the attention weights of ``modules`` during forward passes.

    Args:
        modules: timm ``Attention`` or ``nn.MultiheadAttention`` modules, in block order.
        edit: changes the weights of the timm modules (see the module docstring).
        always: record on every forward pass (a method whose training needs the weights);
            otherwise only inside :meth:`recording`.
        keep: what to keep of each module's (B, heads, N, N) weights (e.g. the head mean of the
            class token's row, far smaller); all of them when None. A method that keeps its own
            record from ``edit`` may keep nothing (``keep`` returns None).
    """

    def __init__(self, modules: Sequence[nn.Module], edit: AttentionEdit | None = None,
                 always: bool = False, keep: Callable[[Tensor], Tensor | None] | None = None) -> None:
        self.modules = list(modules)
        if not self.modules:
            raise UserError("No attention module to read: the network is not a transformer.")
        timm_kinds = _timm_attention()
        for module in self.modules:
            if not isinstance(module, (*timm_kinds, nn.MultiheadAttention)):
                raise UserError(f"{type(module).__name__} is not an attention module camexp can read "
                                "(timm's Attention or torch's MultiheadAttention).")
            if edit is not None and isinstance(module, nn.MultiheadAttention):
                raise UserError("Attention weights of torch's MultiheadAttention can be read, not edited.")
        self.edit = edit
        self.always = always
        self.keep = keep
        self.weights: list[Tensor | None] = [None] * len(self.modules)
        self._queries: dict[int, Tensor] = {}
        self._keys: dict[int, Tensor] = {}
        self._active = always
        self._handles: list[Any] = []
        for index, module in enumerate(self.modules):
            self._attach(index, module)
        if always:
            self._set_fused(False)

    # -- hooks --------------------------------------------------------------------------------

    def _attach(self, index: int, module: nn.Module) -> None:
        if isinstance(module, nn.MultiheadAttention):
            self._handles += [module.register_forward_pre_hook(self._ask_for_weights, with_kwargs=True),
                              module.register_forward_hook(self._keep_returned(index))]
            return
        self._handles += [
            module.q_norm.register_forward_hook(self._keep_into(self._queries, index)),
            module.k_norm.register_forward_hook(self._keep_into(self._keys, index)),
            module.attn_drop.register_forward_pre_hook(self._weights_of(index, module)),
        ]

    def _keep_into(self, store: dict[int, Tensor], index: int):
        def keep(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            if self._active and self.edit is not None:
                store[index] = output
        return keep

    def _weights_of(self, index: int, module: nn.Module):
        def weights(_dropout: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
            if not self._active:
                return None
            attention = inputs[0]
            if self.edit is not None:
                attention = self.edit(index, attention, self._queries.pop(index),
                                      self._keys.pop(index), float(module.scale))
            self.weights[index] = attention if self.keep is None else self.keep(attention)
            return (attention,) if self.edit is not None else None
        return weights

    def _ask_for_weights(self, _module: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
        if not self._active:
            return None
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def _keep_returned(self, index: int):
        def keep(_module: nn.Module, _inputs: Any, output: tuple[Tensor, Tensor | None]) -> None:
            if self._active:
                self.weights[index] = output[1] if self.keep is None else self.keep(output[1])
        return keep

    def _set_fused(self, fused: bool) -> list[bool]:
        """Set timm's ``fused_attn`` on the modules; the previous values."""
        saved = []
        for module in self.modules:
            saved.append(bool(getattr(module, "fused_attn", False)))
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused
        return saved

    # -- use ----------------------------------------------------------------------------------

    @contextmanager
    def recording(self) -> Iterator[AttentionTaps]:
        """Record the weights of the forward passes run inside (timm modules unfused)."""
        if self.always:
            yield self
            return
        saved = self._set_fused(False)
        self._active = True
        try:
            yield self
        finally:
            self._active = False
            for module, fused in zip(self.modules, saved, strict=True):
                if hasattr(module, "fused_attn"):
                    module.fused_attn = fused

    def remove(self) -> None:
        """Take the hooks off the modules (a map source done with a network)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.weights = [None] * len(self.modules)

    def stacked(self) -> list[Tensor]:
        """The last forward pass's weights, one (B, heads, N, N) tensor per module (or what
        ``keep`` kept of it)."""
        missing = [i for i, w in enumerate(self.weights) if w is None]
        if missing:
            raise RuntimeError(f"attention modules {missing} did not run while recording")
        return [w for w in self.weights if w is not None]

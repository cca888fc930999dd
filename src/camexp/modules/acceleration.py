"""GPU speed knobs of the network: channels-last memory format and torch.compile.

Both leave the arithmetic of the network alone (same logits and maps to float tolerance),
so they are run-time settings (``model.channels_last``, ``model.compile``), not part of the
network a checkpoint describes.

``torch.compile`` is applied in place to the two pieces every method calls, ``net.trunk``
and ``net.head`` (``nn.Module.compile``): parameter names and state-dict keys do not change
(checkpoints load either way), forward hooks on their layers (SPG's taps) still fire, and
CAMs, methods' maps and backprop saliency still come from the same forward pass. The small
rest (pooling, classifier, CAM einsum, the methods' own branches) stays eager.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from camexp.core.errors import CompileError

log = logging.getLogger(__name__)

# trunk and head are nn.Sequential and share one compiled code object, whose cache then holds
# their train/eval, grad/no-grad and shape variants: more than dynamo's default 8.
RECOMPILE_LIMIT = 64


def to_channels_last(net: nn.Module) -> nn.Module:
    """Store the network's 4-D weights channels-last (NHWC), the layout cuDNN's bf16
    convolutions run fastest in on tensor-core GPUs."""
    return net.to(memory_format=torch.channels_last)


def batch_to_channels_last(images: Tensor) -> Tensor:
    return images.contiguous(memory_format=torch.channels_last)


def compile_net(net: nn.Module) -> None:
    """Compile ``net.trunk`` and ``net.head`` in place (lazily: the first batch compiles)."""
    limit = getattr(torch._dynamo.config, "recompile_limit", None)
    if limit is not None and limit < RECOMPILE_LIMIT:
        torch._dynamo.config.recompile_limit = RECOMPILE_LIMIT
    for name in ("trunk", "head"):
        getattr(net, name).compile()


def compile_message(method: str, arch: str, error: BaseException) -> str:
    causes, cause = [type(error).__name__], getattr(error, "inner_exception", None) or error.__cause__
    while cause is not None and len(causes) < 4:
        causes.append(type(cause).__name__)
        error, cause = cause, cause.__cause__
    first = " ".join(str(error).split())[:300]
    return (
        f"model.compile=true: torch.compile could not compile model.arch={arch!r} with "
        f"method={method} ({': '.join(causes)}: {first}). Train without compiling: "
        "model.compile=false (channels-last and bf16 still apply). On CPU, compiling needs a "
        "working C++ compiler (gcc); on GPU, the Triton that ships with torch."
    )


@contextmanager
def compile_errors(enabled: bool, method: str, arch: str) -> Iterator[None]:
    """Turn a failure of torch.compile (raised at the first call of a compiled piece) into a
    :class:`CompileError` naming the fix; other errors pass unchanged."""
    if not enabled:
        yield
        return
    from torch._dynamo.exc import TorchDynamoException

    try:
        yield
    except TorchDynamoException as error:
        raise CompileError(compile_message(method, arch, error)) from error

"""JPEG decoding on the GPU (``data.decode_device=cuda``), with the CPU pipeline's semantics.

The DataLoader workers then only read the files: each item carries the encoded bytes, the
crop and flip drawn from the sample's own generator (``(seed, epoch, index)``, exactly as the
CPU path draws them), and the boxes and masks already transformed on the CPU with those same
parameters and the size read from the JPEG header. On the device,
:func:`decode_batch` decodes the batch with torchvision's nvjpeg decoder
(``torchvision.io.decode_jpeg(device="cuda")``) and applies the transform's own
``apply_image`` (resize, crop, flip) with the float resize
(:func:`~camexp.data.transforms.resize_image_float`), within a grey level of the CPU's uint8
kernel. Files nvjpeg is not given (CMYK JPEGs, PNGs under a .JPEG name) are decoded and
transformed in the worker as before; an image the GPU decoder refuses is decoded on the CPU.

The remaining difference from the CPU path is the decoder itself: nvjpeg's IDCT and chroma
upsampling may differ from libjpeg-turbo's by a few grey levels (not measured here: no GPU).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import simplejpeg
import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg

from camexp.core.errors import DatasetError
from camexp.data.transforms import resize_image_float

log = logging.getLogger(__name__)

DECODE_DEVICES = ("cpu", "cuda")


def device_decoder_problem(device: torch.device) -> str | None:
    """Why JPEGs cannot be decoded on ``device`` (None: they can). Decodes one tiny JPEG."""
    if not torch.cuda.is_available():
        return "no CUDA device is visible to torch"
    if device.type != "cuda":
        return f"the run's device is {device.type}, not a CUDA GPU"
    probe = simplejpeg.encode_jpeg(np.zeros((16, 16, 3), dtype=np.uint8), quality=90)
    try:
        decode_jpeg(torch.frombuffer(bytearray(probe), dtype=torch.uint8), mode=ImageReadMode.RGB,
                    device=device)
    except Exception as error:  # torchvision built without nvjpeg, driver trouble, ...
        return f"torchvision's GPU JPEG decoder failed ({' '.join(str(error).split())[:200]})"
    return None


def _decode_many(encoded: Sequence[Tensor], device: torch.device) -> list[Tensor | None]:
    """Decode a list of encoded JPEGs on ``device`` in one batched call; where that fails,
    one by one; None for those the decoder refuses."""
    if not encoded:
        return []
    try:
        return list(decode_jpeg(list(encoded), mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        images: list[Tensor | None] = []
        for data in encoded:
            try:
                images.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                images.append(None)
        return images


def decode_batch(batch: dict, decode: dict, device: torch.device, transform,
                 on_bad_image: str = "error") -> dict:
    """Fill ``batch["image"]`` (B, 3, H, W) uint8 on ``device`` from the collated ``decode``
    entry (:func:`camexp.data.dataset.collate`) and the transform that drew its parameters."""
    from camexp.data.images import decode_bytes

    encoded: list[Tensor | None] = decode["encoded"]
    size = transform.output_size
    images = torch.empty((len(encoded), 3, *size), dtype=torch.uint8, device=device)
    if len(decode["cpu_rows"]):
        images[decode["cpu_rows"].to(device)] = decode["cpu_images"].to(device, non_blocking=True)
    rows = [row for row, data in enumerate(encoded) if data is not None]
    decoded = _decode_many([encoded[row] for row in rows], device)
    params = decode["params"].tolist()
    bad: list[int] = []
    for row, image in zip(rows, decoded, strict=True):
        if image is None:
            try:
                image = decode_bytes(encoded[row].numpy().tobytes(), batch["image_id"][row]).to(device)
            except DatasetError as error:
                if on_bad_image != "skip":
                    raise
                log.warning("data.on_bad_image=skip: skipping %s (%s)", batch["image_id"][row], error)
                bad.append(row)
                continue
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        top, left, flip = params[row]
        images[row] = transform.apply_image(image, (int(top), int(left), bool(flip)),
                                            resize=resize_image_float)
    batch["image"] = images
    if bad:
        batch = drop_rows(batch, [row for row in range(len(encoded)) if row not in bad])
    return batch


def drop_rows(batch: dict, keep: list[int]) -> dict:
    """The batch with only the rows ``keep`` (tensors and lists of the batch's length)."""
    size = len(batch["label"])
    if not keep:
        raise DatasetError(
            "Every image of a batch was unreadable and skipped (data.on_bad_image=skip); the "
            "warnings above name them. Replace the files or run python -m camexp.check_data."
        )
    index = torch.tensor(keep, device=batch["label"].device)
    out = {}
    for key, value in batch.items():
        if isinstance(value, Tensor) and value.dim() > 0 and len(value) == size:
            out[key] = value[index.to(value.device)]
        elif isinstance(value, list) and len(value) == size:
            out[key] = [value[row] for row in keep]
        else:
            out[key] = value
    return out

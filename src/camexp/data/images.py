"""Decoding image and mask files to uint8 tensors (and reading a JPEG's size from its header):
the one place that turns a file into pixels, with one paragraph naming any file it cannot read."""

from __future__ import annotations

import warnings
from pathlib import Path

import simplejpeg
import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, read_file

from camexp.core.errors import DatasetError


def quiet_decoder_notice() -> None:
    """Hide torchvision 0.29's notice that its decoders move to torchcodec: they still decode
    camexp's PNGs, masks and CMYK JPEGs, and the notice would repeat for every image. Called
    where decoding starts (the data checks, the data module's setup, before its workers
    start), not at import. Idempotent."""
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)


def read_image(path: Path) -> Tensor:
    """Decode an image file to (3, H, W) uint8 RGB (an (H, W, 3) buffer seen channels first).

    YCbCr and grayscale JPEGs go through simplejpeg (libjpeg-turbo with its accurate DCT and
    fancy upsampling: the same pixels as torchvision's decoder and PIL, with less overhead per
    call); CMYK JPEGs (a grey level apart there), JPEGs simplejpeg refuses, PNGs and anything
    else through torchvision's native decoders (palette, grey, grey + alpha and RGBA PNGs become
    RGB; 16-bit PNGs are scaled to 8 bits). A truncated or damaged file is an error, never a
    grey-filled image. An EXIF orientation tag is ignored, as in the field's code: pixels and
    boxes are in the stored pixel grid.
    """
    return decode_bytes(read_bytes(path), path)


def read_bytes(path: Path) -> bytes:
    """The bytes of an image file; one paragraph naming it when it cannot be read."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise DatasetError(
            f"Cannot read image {path}: {error}. Replace the file with an intact copy."
        ) from error
    return data


def decode_bytes(data: bytes, name: str | Path) -> Tensor:
    """:func:`read_image` of a file's bytes already read; ``name`` for the message."""
    try:
        if data[:2] == b"\xff\xd8":
            try:
                if simplejpeg.decode_jpeg_header(data)[2] in ("YCbCr", "Gray"):
                    return torch.from_numpy(simplejpeg.decode_jpeg(data)).permute(2, 0, 1)
            except ValueError:
                pass  # torchvision's decoder has the last word, and the error message
        return to_8_bits(decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                      mode=ImageReadMode.RGB))
    except (RuntimeError, OSError) as error:
        raise DatasetError(
            f"Cannot read image {name}: {error}. Replace the file with an intact copy."
        ) from error


def to_8_bits(pixels: Tensor) -> Tensor:
    """uint8 as it is; 16-bit pixels (torchvision decodes 16-bit PNGs to uint16) scaled to
    8 bits as ``round(value * 255 / 65535)``, so 65535 is 255, not a clamp of everything above 255."""
    if pixels.dtype == torch.uint8:
        return pixels
    if pixels.dtype != torch.uint16:
        raise RuntimeError(f"decoded to {pixels.dtype}, which camexp does not convert")
    return ((pixels.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)


def read_encoded(path: Path) -> tuple[Tensor, tuple[int, int]] | None:
    """The bytes of a JPEG the GPU decoder is given, as a uint8 tensor, and its (H, W) from
    the header; None for any other file (it is decoded on the CPU as usual)."""
    data = read_bytes(path)
    size = jpeg_size(data)
    return None if size is None else (torch.frombuffer(bytearray(data), dtype=torch.uint8), size)


def read_mask(path: Path) -> Tensor:
    """Decode a mask PNG to (H, W) uint8 (CUB's segmentations are 8-bit grayscale)."""
    try:
        return to_8_bits(decode_image(read_file(str(path)), mode=ImageReadMode.GRAY))[0]
    except (RuntimeError, OSError) as error:
        raise DatasetError(
            f"Cannot read mask {path}: {error}. Replace it, or set data.load_masks=false."
        ) from error


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` of a YCbCr or grayscale JPEG from its header; None for anything
    the GPU decoder is not given (CMYK, not a JPEG, an unreadable header)."""
    if data[:2] != b"\xff\xd8":
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (int(height), int(width)) if colorspace in ("YCbCr", "Gray") else None

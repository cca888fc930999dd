"""Image decoding and the training transform's arithmetic, on real encoded files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, read_file

from camexp.core.errors import DatasetError
from camexp.data.images import read_image
from camexp.data.transforms import TrainTransform


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: chroma detail that subsampling and upsampling touch."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, (x + y) % 64 * 4], -1)
    return (pixels + rng.normal(0, 20, pixels.shape)).clip(0, 255).astype(np.uint8)


def _save(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


JPEG_KINDS = {
    "ycbcr 4:2:0": lambda p: _save(p, Image.fromarray(_photo(75, 101)), format="JPEG", quality=90),
    "ycbcr 4:4:4": lambda p: _save(p, Image.fromarray(_photo(64, 48)), format="JPEG", subsampling=0),
    "ycbcr 4:2:2": lambda p: _save(p, Image.fromarray(_photo(33, 70)), format="JPEG", subsampling=1),
    "progressive": lambda p: _save(p, Image.fromarray(_photo(50, 50)), format="JPEG", progressive=True),
    "grayscale": lambda p: _save(p, Image.fromarray(_photo(41, 57)[..., 0]), format="JPEG"),
    "cmyk": lambda p: _save(p, Image.fromarray(_photo(40, 30)).convert("CMYK"), format="JPEG"),
    # ImageNet's train set holds a PNG named .JPEG (n02105855_2933.JPEG)
    "png named .JPEG": lambda p: _save(p, Image.fromarray(_photo(20, 30)), format="PNG"),
}


@pytest.mark.parametrize("kind", sorted(JPEG_KINDS))
def test_read_image_gives_torchvisions_and_pils_pixels(tmp_path: Path, kind: str) -> None:
    path = JPEG_KINDS[kind](tmp_path / "image.JPEG")
    ours = read_image(path)
    theirs = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    with Image.open(path) as image:
        pil = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    assert ours.dtype == torch.uint8 and ours.shape == theirs.shape == pil.shape
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, pil)


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.98])
def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path: Path, keep: float) -> None:
    path = JPEG_KINDS["ycbcr 4:2:0"](tmp_path / "cut.jpg")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DatasetError, match=r"Cannot read image .*cut\.jpg: .*Replace the file"):
        read_image(path)


def test_garbage_after_the_jpeg_marker_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jpg"
    path.write_bytes(b"\xff\xd8" + bytes(range(256)) * 4)
    with pytest.raises(DatasetError, match=r"garbage\.jpg"):
        read_image(path)


def test_train_transform_crop_flip_and_boxes_by_hand() -> None:
    """80 x 40 (W x H) image -> resize 20 x 40 -> crop 16; the draws are top, left, flip."""
    image = torch.arange(40 * 80, dtype=torch.int64).reshape(1, 40, 80).repeat(3, 1, 1)
    image = (image % 251).to(torch.uint8)
    boxes = torch.tensor([[10.0, 4.0, 50.0, 30.0], [70.0, 0.0, 80.0, 40.0]])
    transform = TrainTransform(resize=(20, 40), crop=16)
    seen_flips = set()
    for seed in range(40):
        out, out_boxes, _ = transform(image, boxes, generator=torch.Generator().manual_seed(seed))
        draws = torch.Generator().manual_seed(seed)
        top = int(torch.randint(0, 5, (), generator=draws))
        left = int(torch.randint(0, 25, (), generator=draws))
        flip = float(torch.rand((), generator=draws)) < 0.5
        seen_flips.add(flip)
        # scale by 0.5 in x and y, shift by the crop's corner, clip to [0, 15]
        x0, y0, x1, y1 = (np.array([[5.0, 2.0, 25.0, 15.0], [35.0, 0.0, 40.0, 20.0]])
                          - [left, top, left, top]).clip(0, 15).T
        if flip:  # inclusive pixels: x -> 15 - x, and the corners swap
            x0, x1 = 15 - x1, 15 - x0
        np.testing.assert_allclose(out_boxes.numpy(), np.stack([x0, y0, x1, y1], 1))
        assert out_boxes.dtype == torch.float32
        resized = torch.nn.functional.interpolate(
            image[None].float(), size=(20, 40), mode="bilinear", antialias=True)[0]
        expected = resized[:, top : top + 16, left : left + 16]
        expected = expected.flip(-1) if flip else expected
        assert out.shape == (3, 16, 16)
        assert (out.float() - expected).abs().max() <= 1.0  # uint8 kernel, within a grey level
    assert seen_flips == {False, True}


def test_read_image_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"absent\.jpg"):
        read_image(tmp_path / "absent.jpg")


def test_read_image_matches_pil_over_sizes_and_qualities(tmp_path: Path) -> None:
    """The equality above is not luck of one file: odd sizes (partial MCUs), several qualities."""
    rng = np.random.default_rng(3)
    for trial in range(20):
        h, w = int(rng.integers(8, 90)), int(rng.integers(8, 90))
        path = _save(tmp_path / f"{trial}.jpg", Image.fromarray(_photo(h, w, seed=trial)),
                     format="JPEG", quality=int(rng.integers(50, 100)))
        with Image.open(path) as image:
            pil = np.asarray(image.convert("RGB"))
        assert np.array_equal(read_image(path).permute(1, 2, 0).numpy(), pil), (h, w)


# -- issue 19: every mode PIL and torchvision return decodes to (3, H, W) uint8 ------------------


def _png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG (grey (H, W) or RGB (H, W, 3)), as scanners and microscopes write them."""
    import cv2

    ok, encoded = cv2.imencode(".png", pixels if pixels.ndim == 2 else pixels[..., ::-1])
    assert ok
    path.write_bytes(encoded.tobytes())  # PNG whatever the suffix
    with Image.open(path) as written:
        assert written.format == "PNG"
    return path


def _scaled(pixels: np.ndarray) -> np.ndarray:
    """16 bits -> 8 by value * 255 / 65535, rounded."""
    return np.floor(pixels.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)


def test_16_bit_pngs_are_scaled_to_8_bits(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 65536, (9, 13), dtype=np.uint16)
    grey[0, :4] = [0, 128, 129, 65535]  # the rounding edges
    rgb = rng.integers(0, 65536, (7, 11, 3), dtype=np.uint16)
    got = read_image(_png16(tmp_path / "grey16.png", grey))
    assert got.dtype == torch.uint8 and got.shape == (3, 9, 13)
    np.testing.assert_array_equal(got.numpy(), np.broadcast_to(_scaled(grey), (3, 9, 13)))
    assert got[0, 0, :4].tolist() == [0, 0, 1, 255]
    got = read_image(_png16(tmp_path / "rgb16.png", rgb))
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), _scaled(rgb))


MODES = {
    "palette": lambda a: Image.fromarray(a).convert("P"),
    "LA": lambda a: Image.fromarray(a).convert("LA"),
    "RGBA": lambda a: Image.fromarray(a).convert("RGBA"),
    "1-bit": lambda a: Image.fromarray(a).convert("1"),
    "I;16": lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_png_mode_decodes_to_rgb_uint8_like_pil(tmp_path: Path, mode: str) -> None:
    image = MODES[mode](_photo(12, 17))
    path = _save(tmp_path / f"{mode}.png", image, format="PNG")
    got = read_image(path)
    assert got.dtype == torch.uint8 and got.shape == (3, 12, 17)
    with Image.open(path) as opened:
        expected = np.asarray(opened.convert("RGB") if opened.mode != "I;16"
                              else Image.fromarray(_scaled(np.asarray(opened)[..., None].repeat(3, -1))))
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)


def test_a_16_bit_png_serves_the_pixels_of_its_8_bit_original(tmp_path: Path) -> None:
    """It passed check_data, then was clamped to 255 by the resize (or, at the loader's size,
    killed a DataLoader worker with a dtype traceback): the 16-bit copy of an image (value x 257)
    must give exactly the 8-bit original's batches."""
    from camexp.data.datamodule import CUBDataModule
    from tests.helpers.datasets import write_cub

    def batches(cub: Path, size: int) -> list[dict]:
        datamodule = CUBDataModule(str(cub.parent), num_classes=3, batch_size=3, num_workers=0,
                                   val_fraction=0.5, resize_size=(size, size), crop_size=size,
                                   eval_size=(size, size), check_sample=100)
        datamodule.check()
        datamodule.setup("fit")
        loaders = datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()
        return [batch["image"] for loader in loaders for batch in loader]

    original, copy = write_cub(tmp_path / "a"), write_cub(tmp_path / "b")
    victim = Path("images") / "001.Bird_1" / "Bird_1_0000_1.jpg"
    _png16(copy / victim, np.asarray(Image.open(copy / victim))[..., :3].astype(np.uint16) * 257)
    for size in (40, 48):  # resized, and (48 x 60 -> 48 x 48 crop) not resized in height
        expected, got = batches(original, size), batches(copy, size)
        assert sum(len(images) for images in got) == 12
        for want, have in zip(expected, got, strict=True):
            assert have.dtype == torch.uint8 and torch.equal(want, have)


@pytest.mark.parametrize("kind", ["ycbcr", "cmyk"])
def test_exif_orientation_is_ignored_boxes_and_pixels_share_the_stored_grid(tmp_path: Path, kind: str) -> None:
    """camexp, like the field's code, decodes the stored pixel grid: an EXIF orientation tag
    (6: rotate 90 degrees to display) is ignored, so the boxes of the metadata, written in the
    stored grid, fall on the object, and the size the checks read from the header agrees."""
    from camexp.data.checks import _header_size

    pixels = np.full((40, 64, 3), 20, dtype=np.uint8)
    x0, y0, x1, y1 = 40, 5, 60, 20  # the object, in the stored grid
    pixels[y0:y1, x0:x1] = 230
    image = Image.fromarray(pixels)
    image = image.convert("CMYK") if kind == "cmyk" else image
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path / "rotated.jpg", image, format="JPEG", quality=95, exif=exif)
    with Image.open(path) as opened:
        assert opened.getexif()[0x0112] == 6
    got = read_image(path)
    assert got.shape == (3, 40, 64) and _header_size(path) == (64, 40)
    inside = got[:, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].float().mean()
    outside = got[:, :, : x0 - 2].float().mean()
    assert inside > 180 and outside < 70  # the box holds the object

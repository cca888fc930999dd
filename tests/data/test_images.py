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

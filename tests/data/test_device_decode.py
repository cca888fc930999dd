"""data.decode_device=cuda: the device path's pieces, run here on the CPU device, give the CPU
pipeline's crops, flips, boxes and masks exactly and its pixels within a grey level; the
fallback to CPU decoding when there is no GPU decoder says so in one line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image

from camexp.core.errors import DatasetError
from camexp.data.datamodule import CUBDataModule
from camexp.data.device_decode import decode_batch
from camexp.data.images import jpeg_size
from camexp.data.transforms import EvalTransform, TrainTransform, resize_image_float

CPU = torch.device("cpu")


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    """Smooth structure plus noise: resizing it exercises the antialiasing."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(x[..., None] / 5.0 + y[..., None] / 7.0 + np.arange(3))
    pixels = (base + rng.normal(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def test_device_transform_pieces_match_the_cpu_transform() -> None:
    """Same draws from the same generator, same boxes and masks, pixels within 1 grey level."""
    transform = TrainTransform(resize=(48, 56), crop=40)
    flips, corners = set(), set()
    for seed in range(24):
        h, w = 30 + seed * 3, 90 - seed * 2
        image = _image(h, w, seed)
        mask = (image[0] > 127).to(torch.uint8) * 255
        boxes = torch.tensor([[3.0, 2.0, w - 5.0, h - 4.0], [10.0, 5.0, 20.0, 15.0]])
        cpu_image, cpu_boxes, cpu_mask = transform(image, boxes, mask,
                                                   generator=torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed)
        params = transform.draw(generator)
        flips.add(params[2])
        corners.add(params[:2])
        assert torch.equal(transform.apply_boxes(boxes, (h, w), params), cpu_boxes)
        assert torch.equal(transform.apply_mask(mask, params), cpu_mask)
        device_image = transform.apply_image(image, params, resize=resize_image_float)
        assert device_image.shape == cpu_image.shape == (3, 40, 40)
        assert (device_image.int() - cpu_image.int()).abs().max() <= 1
    assert flips == {False, True} and len(corners) > 10
    evaluation = EvalTransform((32, 40))
    image = _image(50, 70, 1)
    cpu_image, cpu_boxes, _ = evaluation(image, torch.tensor([[5.0, 5.0, 60.0, 40.0]]))
    assert torch.equal(evaluation.apply_boxes(torch.tensor([[5.0, 5.0, 60.0, 40.0]]), (50, 70),
                                              evaluation.draw()), cpu_boxes)
    device_image = evaluation.apply_image(image, evaluation.draw(), resize=resize_image_float)
    assert (device_image.int() - cpu_image.int()).abs().max() <= 1


def _datamodule(root: Path, **kwargs) -> CUBDataModule:
    datamodule = CUBDataModule(str(root), num_classes=3, batch_size=3, num_workers=0,
                               val_fraction=0.5, resize_size=(40, 44), crop_size=32,
                               eval_size=(36, 30), load_masks=True, seed=11, **kwargs)
    datamodule.setup("fit")
    return datamodule


def _batches(datamodule: CUBDataModule, device_path: bool) -> list[dict]:
    """Train batches of epoch 1 and every test batch, through transfer_batch_to_device."""
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(1)
    out = []
    for batch in [*loader, *datamodule.test_dataloader()]:
        assert ("decode" in batch) is device_path and (batch["image"] is None) is device_path
        out.append(datamodule.transfer_batch_to_device(batch, CPU, 0))
    return out


def test_device_decoding_pipeline_matches_the_cpu_pipeline(cub_dir: Path) -> None:
    """The whole device path (bytes in the worker, decode + resize/crop/flip at transfer), on
    the CPU device, against the CPU pipeline; one CMYK JPEG is decoded in the worker."""
    cmyk = sorted((cub_dir / "images").rglob("*_0003_*.jpg"))[0]  # a test image
    Image.open(cmyk).convert("CMYK").save(cmyk, quality=95)
    assert jpeg_size(cmyk.read_bytes()) is None
    assert jpeg_size(sorted((cub_dir / "images").rglob("*.jpg"))[1].read_bytes()) == (48, 60)
    cpu = _batches(_datamodule(cub_dir), device_path=False)
    datamodule = _datamodule(cub_dir)
    datamodule.decode_on_device = True  # what setup decides on a GPU with nvjpeg
    for dataset in datamodule.datasets.values():
        dataset.decode_on_device = True
    device = _batches(datamodule, device_path=True)
    assert len(cpu) == len(device) == 3  # 1 train batch (3 of 3 images), 2 test batches
    worker_decoded = 0
    for ours, theirs in zip(device, cpu, strict=True):
        assert ours["image_id"] == theirs["image_id"]
        for key in ("label", "index", "boxes", "num_boxes", "mask"):
            assert torch.equal(ours[key], theirs[key]), key
        assert ours["image"].shape == theirs["image"].shape and ours["image"].dtype == torch.uint8
        assert (ours["image"].int() - theirs["image"].int()).abs().max() <= 1
        worker_decoded += sum(torch.equal(a, b) for a, b in zip(ours["image"], theirs["image"],
                                                                 strict=True))
    assert worker_decoded >= 1  # the CMYK row at least: the very same pixels
    assert device[0]["image"].shape == (3, 3, 32, 32) and device[1]["image"].shape[-2:] == (36, 30)


def _undecodable_batch() -> tuple[dict, dict]:
    good = simplejpeg.encode_jpeg(_image(20, 24, 0).permute(1, 2, 0).numpy().copy(), quality=90)
    encoded = [torch.frombuffer(bytearray(good), dtype=torch.uint8),
               torch.frombuffer(bytearray(b"\xff\xd8" + bytes(range(256)) * 2), dtype=torch.uint8)]
    batch = {"image": None, "label": torch.tensor([0, 1]), "image_id": ["good.jpg", "bad.jpg"],
             "boxes": torch.zeros(2, 1, 4), "num_boxes": torch.tensor([1, 1])}
    decode = {"train": False, "encoded": encoded, "params": torch.zeros(2, 3, dtype=torch.int64),
              "cpu_rows": torch.zeros(0, dtype=torch.int64), "cpu_images": torch.zeros(0)}
    return batch, decode


def test_an_image_no_decoder_reads_follows_on_bad_image(caplog) -> None:
    batch, decode = _undecodable_batch()
    with pytest.raises(DatasetError, match=r"Cannot read image bad\.jpg"):
        decode_batch(batch, decode, CPU, EvalTransform((16, 16)), "error")
    batch, decode = _undecodable_batch()
    with caplog.at_level(logging.WARNING):
        out = decode_batch(batch, decode, CPU, EvalTransform((16, 16)), "skip")
    assert out["image_id"] == ["good.jpg"] and out["image"].shape == (1, 3, 16, 16)
    assert out["label"].tolist() == [0] and out["num_boxes"].tolist() == [1]
    assert "skipping bad.jpg" in caplog.text


def test_no_gpu_decoder_falls_back_to_the_cpu_with_one_notice(cub_dir: Path, caplog) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the fallback needs none")
    with caplog.at_level(logging.WARNING, logger="camexp.data.wsol"):
        datamodule = _datamodule(cub_dir, decode_device="cuda")
        datamodule.setup("test")  # train runs fit, then test: still one notice
    notices = [r.getMessage() for r in caplog.records if "data.decode_device=cuda" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "no CUDA device" in notices[0] and "on the CPU in the DataLoader workers" in notices[0]
    assert not datamodule.decode_on_device
    assert not any(d.decode_on_device for d in datamodule.datasets.values())
    batch = next(iter(datamodule.test_dataloader()))
    assert "decode" not in batch and batch["image"].shape == (3, 3, 36, 30)


def test_decode_device_must_be_cpu_or_cuda(cub_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"data.decode_device='gpu' is not allowed.*'cuda'"):
        CUBDataModule(str(cub_dir), num_classes=3, decode_device="gpu")


@pytest.mark.slow
def test_training_through_the_device_path(tmp_path: Path, data_dir: Path, monkeypatch) -> None:
    """A train + test run whose every batch Lightning hands to the DataModule's
    transfer_batch_to_device, decoded there (on the CPU device: the probe is told yes)."""
    import camexp.data.wsol as wsol
    from camexp.train import train
    from tests.helpers.configs import TINY_SYNTHETIC, compose_config

    calls = []
    monkeypatch.setattr(wsol, "device_decoder_problem", lambda device: None)
    original = wsol.decode_batch

    def counting(batch, decode, device, transform, on_bad_image):
        calls.append((decode["train"], len(decode["encoded"])))
        return original(batch, decode, device, transform, on_bad_image)

    monkeypatch.setattr(wsol, "decode_batch", counting)
    cfg = compose_config("train", TINY_SYNTHETIC + [
        "data.decode_device=cuda", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "callbacks.cam_pictures.num_images=2",
        "trainer.enable_progress_bar=false"], tmp_path / "train", data_dir)
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc_top1"] <= 1.0
    assert [n for train_batch, n in calls if train_batch] == [8, 8]
    assert sum(n for train_batch, n in calls if not train_batch) >= 20  # val batch + 20 test
    assert len(list((tmp_path / "train" / "cam_pictures").glob("*.png"))) == 2

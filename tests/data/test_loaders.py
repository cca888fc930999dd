"""The training loader serves the epoch Lightning sets, whenever its iterator was made (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from camexp.data.datamodule import CUBDataModule


def _epoch_images(cub_dir: Path, workers: int, persistent: bool, epochs: list[int]) -> list[torch.Tensor]:
    """The training batches of ``epochs``, each iterator made BEFORE ``set_epoch`` as Lightning
    does on a resume (``FitLoop.setup_data`` calls ``iter()``, ``on_advance_start`` then sets the
    epoch); the last epoch's from a second ``iter()`` of the same loader (persistent workers)."""
    datamodule = CUBDataModule(str(cub_dir.parent), num_classes=3, batch_size=2, num_workers=workers,
                               persistent_workers=persistent, val_fraction=0.34, resize_size=(40, 40),
                               crop_size=24, eval_size=(24, 24), seed=3)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    images = []
    for epoch in epochs:
        iterator = iter(loader)
        loader.sampler.set_epoch(epoch)
        images.append(torch.cat([batch["image"] for batch in iterator]))
    return images


@pytest.mark.parametrize("persistent", [True, False])
def test_workers_serve_the_epoch_set_after_iter_like_the_main_process(cub_dir: Path, persistent: bool) -> None:
    expected = _epoch_images(cub_dir, 0, False, [2, 5])
    assert not torch.equal(expected[0], expected[1])  # other epochs, other order and crops
    got = _epoch_images(cub_dir, 2, persistent, [2, 5])
    for want, have in zip(expected, got, strict=True):
        assert torch.equal(want, have)

"""After testing, draw the class activation maps of a fixed set of test images.

For each chosen image: the image with its ground-truth boxes, the CAM of the ground-truth
class and the CAMs of the top predicted classes, from the test step's own forward pass.
The images are spread evenly over the test split, so every run draws the same ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from camexp.viz import draw_cam_panel, minmax


class CAMPictures(L.Callback):
    """Write ``<output_dir>/<k>_<image id>.png`` for ``num_images`` test images.

    Args:
        output_dir: folder for the PNG files (created).
        num_images: how many test images to draw.
        top_k: how many top predicted classes to draw besides the ground-truth class.
    """

    def __init__(self, output_dir: str, num_images: int = 12, top_k: int = 3) -> None:
        self.output_dir = Path(output_dir)
        self.num_images = num_images
        self.top_k = top_k
        self.chosen: dict[int, int] = {}
        self.samples: list[dict[str, Any]] = []
        self.written: list[Path] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        size = len(trainer.datamodule.datasets["test"])
        picks = np.unique(np.linspace(0, size - 1, min(self.num_images, size)).round().astype(int))
        self.chosen = {int(index): order for order, index in enumerate(picks)}
        self.samples = []

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        rows = [row for row, index in enumerate(batch["index"].tolist()) if index in self.chosen]
        if not rows:
            return
        rows_t = torch.tensor(rows, device=outputs["logits"].device)
        logits = outputs["logits"][rows_t]
        probs = logits.softmax(dim=1)
        top = probs.topk(min(self.top_k, probs.shape[1]), dim=1)
        labels = batch["label"][rows_t]
        classes = torch.cat([labels[:, None], top.indices], dim=1)
        size = tuple(batch["image"].shape[-2:])
        cams = pl_module.net.cams(outputs["features"][rows_t], classes, size=size).float().cpu()
        for position, row in enumerate(rows):
            self.samples.append({
                "order": self.chosen[int(batch["index"][row])],
                "image_id": batch["image_id"][row],
                "image": batch["image"][row].permute(1, 2, 0).cpu().numpy(),
                "boxes": batch["boxes"][row, : int(batch["num_boxes"][row])].cpu().numpy(),
                "label": int(labels[position]),
                "top": list(zip(top.indices[position].tolist(), top.values[position].tolist(),
                                strict=True)),
                "cams": cams[position].numpy(),
            })

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = trainer.datamodule.class_names
        self.written = []
        for sample in sorted(self.samples, key=lambda s: s["order"]):
            maps = [(f"GT: {names[sample['label']]}", minmax(sample["cams"][0]))]
            maps += [
                (f"top{rank}: {names[cls]} ({prob:.0%})", minmax(cam))
                for rank, ((cls, prob), cam) in enumerate(
                    zip(sample["top"], sample["cams"][1:], strict=True), start=1)
            ]
            stem = sample["image_id"].rsplit(".", 1)[0].replace("/", "__")
            path = self.output_dir / f"{sample['order']:03d}_{stem}.png"
            verdict = "right" if sample["top"][0][0] == sample["label"] else "wrong"
            title = f"{sample['image_id']}  (top-1 {verdict})"
            self.written.append(draw_cam_panel(path, sample["image"], maps, sample["boxes"], title))
        if self.written and trainer.is_global_zero:
            print(f"CAM pictures: {self.output_dir.resolve()} ({len(self.written)} images)")

"""After testing, draw the class activation maps of a fixed set of test images.

For each chosen image: the image with its ground-truth boxes, the map of the ground-truth
class and the maps of the top predicted classes, each resized and min-max normalized exactly
as the localization metrics see it; the title names the maps (CAM, a method's own map, or the
``localization.method`` of a post-hoc or Backprop map). The maps are the ones the metrics scored: the pictures ask
the localization callback's map source (``localization.method``: the trained method's own map,
such as ACoL's fused map, or a post-hoc map) for the same batch; without that callback, the
trained method's own map from the test step's forward pass. With a
:class:`~camexp.callbacks.localization.CAMLocalization` callback in the run, each map also
shows its predicted box at the test split's best MaxBoxAcc threshold (the largest contour's
box), coloured by its IoU with the ground truth. The images are spread evenly over the test
split, so every run draws the same ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.types import STEP_OUTPUT
from typing_extensions import override

from camexp.callbacks.localization import CAMLocalization
from camexp.core.messages import say
from camexp.localization import box_iou, mask_boxes, normalize_map, quantize_map, threshold_levels
from camexp.maps.sources import MapSource
from camexp.maps.trained import TrainedMaps
from camexp.viz import draw_cam_panel

# predicted box colour by IoU with the best-matching ground-truth box; a good box (IoU >= 0.7)
# is white, a colour the jet map never takes (blue vanished on the map's blue background),
# and every predicted box is drawn over a dark outline (camexp.viz) so the others show too
IOU_COLOURS = ((0.7, "#ffffff"), (0.5, "#ffd700"), (0.3, "#ff8c00"), (0.0, "#ff2020"))


def box_legend(tau: float) -> list[tuple[str, str]]:
    """The legend of the predicted-box colours: ``(label, colour)`` per IoU band."""
    bounds = [bound for bound, _ in IOU_COLOURS]
    labels = [f"IoU >= {bounds[0]:g}"] + [f"{low:g} <= IoU < {high:g}" for low, high in
                                          zip(bounds[1:-1], bounds[:-2], strict=True)]
    labels.append(f"IoU < {bounds[-2]:g}")
    labels[0] = f"predicted box (tau {tau:.3f}): {labels[0]}"
    return [(label, colour) for label, (_, colour) in zip(labels, IOU_COLOURS, strict=True)]


def predicted_box(map01: np.ndarray, tau: float) -> np.ndarray:
    """MaxBoxAcc's box for a normalized map at threshold ``tau``: the largest contour's box."""
    quantized = quantize_map(map01)
    level = threshold_levels(np.array([tau]), int(quantized.max()))[0]
    return mask_boxes(quantized > level, multi_contour=False)[0]


def iou_colour(iou: float) -> str:
    return next(colour for bound, colour in IOU_COLOURS if iou >= bound)


def map_label(source: MapSource, pl_module: L.LightningModule) -> str:
    """What the pictures' maps are: the trained method's own map (``CAM``, ``method=acol's own
    map``) or the ``localization.method`` that made them (a post-hoc map, Backprop)."""
    if isinstance(source, TrainedMaps):
        trained = getattr(getattr(pl_module, "method", None), "name", "cam")
        return "CAM" if trained == "cam" else f"method={trained}'s own map"
    return f"localization.method={source.name}"


def _localization(trainer: L.Trainer) -> CAMLocalization | None:
    return next((c for c in trainer.callbacks if isinstance(c, CAMLocalization)), None)


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
        self.own_source = TrainedMaps()  # used when no localization callback scores the maps
        self.source: MapSource = self.own_source
        self.label = "CAM"

    @override
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        size = len(trainer.datamodule.datasets["test"])
        picks = np.unique(np.linspace(0, size - 1, min(self.num_images, size)).round().astype(int))
        self.chosen = {int(index): order for order, index in enumerate(picks)}
        self.samples = []
        localization = _localization(trainer)
        if localization is not None:  # started and closed by that callback
            self.source = localization.source
        else:
            self.source = self.own_source
            self.source.start("test", trainer, pl_module)
        self.label = map_label(self.source, pl_module)

    @override
    @torch.no_grad()
    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                          batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        rows = [row for row, index in enumerate(batch["index"].tolist()) if index in self.chosen]
        if not rows:
            return
        rows_t = torch.tensor(rows, device=outputs["logits"].device)
        logits = outputs["logits"][rows_t]
        probs = logits.softmax(dim=1)
        top = probs.topk(min(self.top_k, probs.shape[1]), dim=1)
        labels = batch["label"][rows_t]
        # the scored maps: ground truth, then the top-5 by logit, whose first top_k are these
        _, maps = self.source.batch_maps(pl_module, outputs, batch)
        cams = maps[rows_t][:, : 1 + top.indices.shape[1]].float().cpu()
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

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_test_end runs after every callback's on_test_epoch_end: the threshold is known.
        localization = _localization(trainer)
        tau = localization.best_tau("test") if localization else None
        self.own_source.close()
        names = trainer.datamodule.class_names
        self.written = []
        for sample in sorted(self.samples, key=lambda s: s["order"]):
            size = sample["image"].shape[:2]
            captions = [f"GT: {names[sample['label']]}"] + [
                f"top{rank}: {names[cls]} ({prob:.0%})"
                for rank, (cls, prob) in enumerate(sample["top"], start=1)
            ]
            maps, boxes = [], []
            for caption, raw in zip(captions, sample["cams"], strict=True):
                map01 = normalize_map(raw, size)
                if tau is not None:
                    box = predicted_box(map01, tau)
                    iou = float(box_iou(box[None].astype(np.float64), sample["boxes"]).max())
                    caption = f"{caption}\nbox IoU {iou:.2f} at tau {tau:.3f}"
                    boxes.append([(box, iou_colour(iou))])
                maps.append((caption, map01))
            stem = sample["image_id"].rsplit(".", 1)[0].replace("/", "__")
            path = self.output_dir / f"{sample['order']:03d}_{stem}.png"
            verdict = "right" if sample["top"][0][0] == sample["label"] else "wrong"
            title = f"{sample['image_id']}  (top-1 {verdict})  maps: {self.label}"
            self.written.append(draw_cam_panel(path, sample["image"], maps, sample["boxes"], title,
                                               pred_boxes=boxes or None,
                                               box_legend=box_legend(tau) if boxes else None))
            self._to_wandb(trainer, sample, names, boxes[0][0][0] if boxes else None, title)
        self.samples = []
        if self.written and trainer.is_global_zero:
            say(f"CAM pictures: {self.output_dir.resolve()} ({len(self.written)} images)")

    def _to_wandb(self, trainer: L.Trainer, sample: dict, names: list[str], predicted, title: str):
        """Log the image with ground-truth and predicted boxes as a ``wandb.Image`` (class
        names as box labels), and the drawn panel, to every W&B logger of the run."""
        from lightning.pytorch.loggers import WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        import wandb

        def box(corners, caption: str) -> dict:
            x0, y0, x1, y1 = (float(v) for v in corners)
            return {"position": {"minX": x0, "minY": y0, "maxX": x1, "maxY": y1},
                    "domain": "pixel", "class_id": sample["label"], "box_caption": caption}

        class_labels = dict(enumerate(names))
        overlays = {"ground_truth": {"box_data": [box(b, names[sample["label"]]) for b in sample["boxes"]],
                                     "class_labels": class_labels}}
        if predicted is not None:
            overlays["predictions"] = {"box_data": [box(predicted, f"{self.label} box (GT class)")],
                                       "class_labels": class_labels}
        image = wandb.Image(sample["image"], boxes=overlays, caption=title)
        panel = wandb.Image(str(self.written[-1]), caption=title)
        for logger in loggers:
            logger.experiment.log({"test/cam_boxes": image, "test/cam_panels": panel})

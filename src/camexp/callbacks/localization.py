"""Evaluate score maps as localizers during validation and test (docs/protocol.md).

The maps come from the map source that ``method`` names, chosen once
(:mod:`camexp.maps.registry`): the trained method's own map from the evaluation step's forward
pass (``cam``), the gradient of the class score with respect to the input pixels
(``backprop``, Simonyan et al.), or the ``grad-cam`` package's raw map of the target layer
(``gradcam``, ``gradcampp``, ``scorecam``, ...: :mod:`camexp.maps.posthoc`). The pictures
callback asks the same source for its images' maps, so it draws the maps scored here.

Logged per stage (``val/...``, ``test/...``): ``MaxBoxAcc`` and its best threshold,
``MaxBoxAccV2`` with ``_IoU30/50/70`` and their best thresholds, the paper's
``loc_top1_err``, ``loc_top5_err`` and ``loc_gt_known`` at a fixed fraction of the maximum,
with ``box_rule`` a paper's own ``top1_loc``, ``top5_loc`` and ``gt_known_loc``
(:mod:`camexp.localization.box_rule`),
``PxAP`` when the batches carry masks, and ``MaxBoxAccV2_center_baseline`` (with masks also
``PxAP_center_baseline``: the field's centre baseline, an isotropic Gaussian centred on every
image, scored by the same metric). The accuracy-versus-threshold
curve is written as CSV and PNG under ``output_dir`` and logged to the logger.

``save_maps`` (``[test]``, ``[val, test]``) also saves the ground-truth class's maps of those
splits for other tools, in the field's layout (``<maps_dir>/<split>/<image_id>.npy``, read by
``camexp.eval_maps``): each map as it is scored here, resized to the evaluation size and
min-max normalized, float64, so that ``eval_maps ... image_size=<the evaluation size>`` on them
gives this run's numbers exactly (docs/eval_maps.md). The val maps are those of the last
validation of the training, whose numbers ``metrics.json`` keeps.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.types import STEP_OUTPUT
from matplotlib.figure import Figure
from torch import Tensor
from typing_extensions import override

from camexp.core.errors import ConfigError
from camexp.core.messages import say
from camexp.localization import MaxBoxAccV2, PaperLocalization, PxAP
from camexp.localization.box_accuracy import curve_columns
from camexp.localization.box_rule import BoxRule, RuleLocalization
from camexp.localization.maps import normalize_map
from camexp.localization.offline import save_score_map
from camexp.maps.center import center_gaussian
from camexp.maps.registry import map_source
from camexp.maps.sources import MapSettings

# the splits whose maps save_maps can save (train is never evaluated)
SAVED_SPLITS = ("val", "test")


class CAMLocalization(L.Callback):
    """Localization metrics of the ground-truth-class maps (and the top-5 classes' maps).

    Args:
        output_dir: where the curve CSV/PNG files go.
        method: ``"cam"``, ``"backprop"`` or a post-hoc method of
            :data:`~camexp.maps.posthoc.POSTHOC_METHODS`, a key of
            :data:`~camexp.maps.registry.MAP_SOURCES` (gradients need
            ``trainer.inference_mode=false``, the default).
        cam_curve_interval: spacing of the thresholds ``arange(0, 1, interval)``.
        iou_thresholds: IoU thresholds (%) of MaxBoxAccV2.
        multi_contour: MaxBoxAccV2 counts every contour's box (the field's default).
        paper_fraction: the paper's threshold, a fraction of the map's maximum.
        paper_iou: IoU for the paper's numbers (0.5).
        center_baseline: also score the centred Gaussian map.
        target_layer: post-hoc methods: the dotted module name of ``pl_module.net`` to explain
            (None: the network's default).
        relu, aug_smooth, eigen_smooth: post-hoc methods: the library's options.
        posthoc_batch_size: forward passes per chunk of Score-CAM and Ablation-CAM.
        save_maps: the splits whose maps are saved (``val``, ``test``); ``maps_dir`` where.
        box_rule: a paper's own box rule (``{rule, threshold, iou, resize, gt_known_map}``,
            :class:`~camexp.localization.box_rule.BoxRule`); None: not scored.
        rollout_head_fusion, rollout_discard: attention rollout's head fusion (mean, max) and
            discarded fraction (:mod:`camexp.maps.rollout`).
    """

    def __init__(
        self,
        output_dir: str,
        method: str = "cam",
        cam_curve_interval: float = 0.001,
        iou_thresholds: tuple[float, ...] = (30, 50, 70),
        multi_contour: bool = True,
        paper_fraction: float = 0.2,
        paper_iou: float = 0.5,
        center_baseline: bool = True,
        target_layer: str | None = None,
        relu: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        posthoc_batch_size: int = 32,
        save_maps: tuple[str, ...] = (),
        maps_dir: str | None = None,
        box_rule: dict[str, Any] | None = None,
        rollout_head_fusion: str = "mean",
        rollout_discard: float = 0.0,
    ) -> None:
        self.source = map_source(method, MapSettings(target_layer, relu, aug_smooth, eigen_smooth,
                                                     posthoc_batch_size, rollout_head_fusion,
                                                     rollout_discard))
        self.output_dir = Path(output_dir)
        self.method = method
        self.settings = {"cam_curve_interval": cam_curve_interval}
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.multi_contour = multi_contour
        self.paper = {"fraction": paper_fraction, "iou_threshold": paper_iou}
        self.center_baseline = center_baseline
        self.box_rule = BoxRule.from_config(box_rule) if box_rule else None
        self.metrics: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, float]] = {}
        self.save_maps = tuple(save_maps or ())
        unknown = [split for split in self.save_maps if split not in SAVED_SPLITS]
        if unknown:
            raise ConfigError(f"save_maps={list(self.save_maps)}: {unknown} not a split whose maps "
                              f"can be saved; use a list of {list(SAVED_SPLITS)}, e.g. save_maps=[test].")
        self.maps_dir = Path(maps_dir) if maps_dir else self.output_dir.parent / "maps"
        self._saving: str | None = None  # the split whose maps this evaluation saves
        self.eval_size: tuple[int, int] | None = None

    # -- metric set per stage --------------------------------------------------------------

    def _start(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        size = tuple(trainer.datamodule.eval_transform.size)
        metrics = {  # V1 comes out of V2's threshold sweep (one sweep per map)
            "v2": MaxBoxAccV2(self.iou_thresholds, self.multi_contour, image_size=size,
                              report_v1=True, **self.settings),
            "paper": PaperLocalization(image_size=size, **self.paper),
            "pxap": PxAP(self.settings["cam_curve_interval"], image_size=size),
        }
        if self.box_rule is not None:
            metrics["rule"] = RuleLocalization(self.box_rule, image_size=size)
        if self.center_baseline:
            metrics["center"] = MaxBoxAccV2(self.iou_thresholds, self.multi_contour,
                                            image_size=size, **self.settings)
            metrics["center_pxap"] = PxAP(self.settings["cam_curve_interval"], image_size=size)
            self.center_map = center_gaussian(size).float()
        self.metrics[stage] = {name: m.to(pl_module.device) for name, m in metrics.items()}
        self.eval_size = size
        self._saving = stage if stage in self.save_maps and self._final(stage, trainer) else None
        # decided from the config, not from the batches, so every DDP rank syncs the same metrics
        self.use_masks = bool(getattr(trainer.datamodule, "load_masks", False))
        self.source.start(stage, trainer, pl_module)

    @torch.no_grad()
    def _update(self, stage: str, pl_module, outputs: dict[str, Tensor], batch: dict) -> None:
        metrics = self.metrics[stage]
        classes, maps = self.source.batch_maps(pl_module, outputs, batch)
        top, maps = classes[:, 1:], maps.float()
        gt_maps, top_maps = maps[:, 0], maps[:, 1:]
        boxes, num_boxes = batch["boxes"], batch["num_boxes"]
        metrics["v2"].update(gt_maps, boxes, num_boxes)
        if self._saving == stage:
            self._save(stage, gt_maps, batch["image_id"])
        metrics["paper"].update(gt_maps, top, batch["label"], boxes, num_boxes, topk_maps=top_maps)
        if "rule" in metrics:
            metrics["rule"].update(gt_maps, top, batch["label"], boxes, num_boxes, top_maps)
        if self.use_masks:
            metrics["pxap"].update(gt_maps, batch["mask"] > 127, batch.get("ignore"))
        if self.center_baseline:
            center = self.center_map.to(gt_maps.device).expand(len(gt_maps), -1, -1)
            metrics["center"].update(center, boxes, num_boxes)
            if self.use_masks:
                metrics["center_pxap"].update(center, batch["mask"] > 127, batch.get("ignore"))

    @staticmethod
    def _final(stage: str, trainer: L.Trainer) -> bool:
        """Whether this evaluation of ``stage`` gives the run's final numbers: the test, or the
        validation of the training's last epoch."""
        if stage != "val":
            return True
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        return bool(last or trainer.should_stop)

    def _save(self, stage: str, maps: Tensor, image_ids: list[str]) -> None:
        """Each map as the metrics score it (float64, resized and normalized): the field's
        layout, one ``<image_id>.npy`` each."""
        raw = maps.detach().to(device="cpu", dtype=torch.float64).numpy()
        for raw_map, image_id in zip(raw, image_ids, strict=True):
            save_score_map(self.maps_dir / stage, image_id, normalize_map(raw_map, self.eval_size))

    def _finish(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.source.close()
        metrics = self.metrics.pop(stage, None)
        if not metrics:
            return
        # compute() syncs the states of all DDP processes: every rank must call it
        results: dict[str, float] = {}
        for name in ("v2", "paper", "rule"):
            if name in metrics:
                results.update({k: float(v) for k, v in metrics[name].compute().items()})
        if self.use_masks:
            results.update({k: float(v) for k, v in metrics["pxap"].compute().items()})
        if self.center_baseline:
            results["MaxBoxAccV2_center_baseline"] = float(metrics["center"].compute()["MaxBoxAccV2"])
            if self.use_masks:  # the field's centre baseline on OpenImages is a PxAP
                results["PxAP_center_baseline"] = float(metrics["center_pxap"].compute()["PxAP"])
        self.results[stage] = results
        pl_module.log_dict({f"{stage}/{key}": value for key, value in results.items()})
        if self._saving == stage and trainer.is_global_zero:
            self._say_saved(stage)
        self._saving = None
        # curve() sums the states over processes (a collective): all ranks, rank 0 writes
        curve = metrics["v2"].curve()
        if trainer.is_global_zero:
            self._write_curve(stage, curve, trainer)

    def _say_saved(self, stage: str) -> None:
        """The eval_maps command that scores the saved maps as this run did."""
        height, width = self.eval_size
        ious = ",".join(f"{t:g}" for t in self.iou_thresholds)
        say(f"camexp: {stage} maps saved in {self.maps_dir / stage} (one <image_id>.npy each, at "
            f"{height}x{width}). Score them as this run did with: python -m camexp.eval_maps "
            f"maps_dir={self.maps_dir / stage} metadata_dir=<python -m camexp.write_metadata's out> "
            f"split={stage} image_size=[{height},{width}] "
            f"cam_curve_interval={self.settings['cam_curve_interval']:g} iou_thresholds=[{ious}] "
            f"multi_contour={str(self.multi_contour).lower()}")

    # -- curve files -----------------------------------------------------------------------

    def _write_curve(self, stage: str, curve: dict, trainer: L.Trainer) -> None:
        """``curve``: MaxBoxAccV2's curves with V1's
        (:meth:`~camexp.localization.box_accuracy.BoxAccuracy.curve`)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        columns = curve_columns(curve)
        csv_path = self.output_dir / f"{stage}_box_accuracy_curve.csv"
        with csv_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["threshold", *columns])
            for index, tau in enumerate(curve["thresholds"]):
                writer.writerow([f"{tau:.6g}", *(f"{column[index]:.4f}" for column in columns.values())])

        figure = Figure(figsize=(5.5, 3.8))  # matplotlib's object API: no backend, no pyplot state
        axis = figure.subplots()
        for name, accuracy in columns.items():
            best = int(np.argmax(accuracy))
            label = f"{name} (max {accuracy[best]:.1f} at {curve['thresholds'][best]:.3f})"
            style = {}
            if name == "MaxBoxAcc_IoU50":
                # V1 is often V2's IoU-50 curve exactly (one object per image): drawn dashed and
                # on top, and said so, so that neither hides the other unnoticed
                style = {"linestyle": "--", "linewidth": 2.0, "zorder": 3, "color": "black"}
                twin = columns.get("MaxBoxAccV2_IoU50")
                if twin is not None and np.allclose(accuracy, twin):
                    label += ", same curve as MaxBoxAccV2_IoU50"
            axis.plot(curve["thresholds"], accuracy, label=label, **style)
        axis.set_xlabel("CAM threshold tau")
        axis.set_ylabel("box accuracy (%)")
        axis.set_title(f"{stage}: box accuracy vs threshold ({curve['num_images']} images)")
        axis.set_ylim(0, 100)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        png_path = self.output_dir / f"{stage}_box_accuracy_curve.png"
        figure.savefig(png_path, dpi=110)
        for logger in trainer.loggers:
            log_image = getattr(logger, "log_image", None)
            if callable(log_image):  # W&B: the plot, and the curve as a table to re-plot
                log_image(key=f"{stage}/box_accuracy_curve", images=[str(png_path)])
            log_table = getattr(logger, "log_table", None)
            if callable(log_table):
                rows = [[float(tau), *(float(c[i]) for c in columns.values())]
                        for i, tau in enumerate(curve["thresholds"])]
                log_table(key=f"{stage}/box_accuracy_curve_table", columns=["threshold", *columns],
                          data=rows)

    # -- Lightning hooks -------------------------------------------------------------------

    def best_tau(self, stage: str = "test") -> float | None:
        """The MaxBoxAcc (V1, IoU 50) best threshold of the last finished ``stage``."""
        return self.results.get(stage, {}).get("MaxBoxAcc_best_tau")

    @override
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("val", trainer, pl_module)

    @override
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self._update("val", pl_module, outputs, batch)

    @override
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish("val", trainer, pl_module)

    @override
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("test", trainer, pl_module)

    @override
    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT,
                          batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update("test", pl_module, outputs, batch)

    @override
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish("test", trainer, pl_module)

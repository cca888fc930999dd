"""The pictures explain themselves: a colour bar and a box legend in the CAM panels, and the
curve plot says when MaxBoxAcc and MaxBoxAccV2's IoU-50 curve coincide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

import camexp.viz.cam_panels as panels_module
from camexp.callbacks.cam_pictures import IOU_COLOURS, box_legend
from camexp.callbacks.localization import CAMLocalization


@pytest.fixture
def kept_figures(monkeypatch) -> list:
    """The figures the drawing code saves, kept for inspection."""
    kept, save = [], Figure.savefig

    def keep(figure, *args, **kwargs):
        kept.append(figure)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return kept


def test_cam_panel_has_a_colour_bar_and_a_box_legend(tmp_path: Path, kept_figures) -> None:
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    cam = np.linspace(0, 1, 600).reshape(20, 30)
    legend = box_legend(0.25)
    assert [colour for _, colour in legend] == [colour for _, colour in IOU_COLOURS]
    assert [label for label, _ in legend] == ["predicted box (tau 0.250): IoU >= 0.7", "0.5 <= IoU < 0.7",
                                              "0.3 <= IoU < 0.5", "IoU < 0.3"]
    path = panels_module.draw_cam_panel(tmp_path / "p.png", image, [("GT", cam), ("top1", cam)],
                                        np.array([[2, 2, 10, 10]]), "title",
                                        pred_boxes=[[(np.array([1, 1, 9, 9]), "#1e90ff")]] * 2,
                                        box_legend=legend)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [figure] = kept_figures
    assert len(figure.axes) == 4  # image, two maps, the colour bar
    assert figure.axes[-1].get_ylabel() == "map, min-max normalized"
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert texts == ["ground-truth box", *(label for label, _ in legend)]


def test_curve_plot_says_when_v1_and_v2_iou50_coincide(tmp_path: Path, kept_figures) -> None:
    callback = CAMLocalization(str(tmp_path))
    thresholds = np.arange(0, 1, 0.25)
    same = np.array([10.0, 50.0, 30.0, 0.0])
    curve = {"thresholds": thresholds, "iou_thresholds": [30.0, 50.0, 70.0], "num_images": 4,
             "accuracy": [same + 10, same, same / 2], "name": "MaxBoxAccV2"}

    class NoLoggers:
        loggers: list = []

    callback._write_curve("test", {**curve, "accuracy_v1": same}, NoLoggers())
    callback._write_curve("val", {**curve, "accuracy_v1": same + 5}, NoLoggers())
    coincide, apart = ([line.get_label() for line in f.axes[0].get_lines()] for f in kept_figures)
    assert coincide[0] == "MaxBoxAcc_IoU50 (max 50.0 at 0.250), same curve as MaxBoxAccV2_IoU50"
    assert apart[0] == "MaxBoxAcc_IoU50 (max 55.0 at 0.250)"
    assert kept_figures[0].axes[0].get_lines()[0].get_linestyle() == "--"


def test_pictures_draw_the_maps_that_were_scored_computed_once_per_batch(tmp_path, data_dir, monkeypatch) -> None:
    """Random-CAM draws new channel weights on every call: a picture computed apart from the
    scoring would show another map. Each batch's maps are computed once, and each drawn map is
    the scored one, resized and normalized."""
    import torch

    import camexp.callbacks.cam_pictures as pictures_module
    from camexp.localization import normalize_map
    from camexp.maps.posthoc import PosthocSource
    from camexp.train import train
    from tests.helpers.configs import TINY_SYNTHETIC, compose_config

    scored, drawn = {}, {}
    computed = PosthocSource.class_maps

    def record_scored(self, pl_module, outputs, batch, classes):
        maps = computed(self, pl_module, outputs, batch, classes)
        again = computed(self, pl_module, outputs, batch, classes)
        assert not torch.allclose(maps, again)  # another call, another map: the test can fail
        for image_id, image_maps in zip(batch["image_id"], maps, strict=True):
            assert image_id not in scored  # once per batch
            scored[image_id] = image_maps.float().cpu().numpy()
        return maps

    def record_drawn(path, image, maps, gt_boxes, title="", **kwargs):
        drawn[title.split()[0]] = [map01 for _, map01 in maps]
        return path

    monkeypatch.setattr(PosthocSource, "class_maps", record_scored)
    monkeypatch.setattr(pictures_module, "draw_cam_panel", record_drawn)
    cfg = compose_config("train", TINY_SYNTHETIC + [
        "train=false", "trainer.enable_progress_bar=false", "localization.method=randomcam",
        "localization.cam_curve_interval=0.05", "callbacks.cam_pictures.num_images=3",
        "callbacks.cam_pictures.top_k=2", "model.head.width=8"], tmp_path / "run", data_dir)
    train(cfg)
    assert len(drawn) == 3 and set(drawn) <= set(scored)
    for image_id, maps in drawn.items():
        assert len(maps) == 3  # ground truth and the top 2
        for drawn_map, raw in zip(maps, scored[image_id], strict=False):
            np.testing.assert_array_equal(drawn_map, normalize_map(raw, drawn_map.shape))


def test_a_good_box_shows_on_the_colour_map(tmp_path: Path, kept_figures) -> None:
    """The IoU >= 0.7 box was blue, drawn on the jet map's blue background; now its colour is
    far from every colour of the map, and each predicted box has a dark outline under it."""
    import matplotlib
    from matplotlib.colors import to_rgb

    jet = matplotlib.colormaps["jet"](np.linspace(0, 1, 1024))[:, :3]
    good = np.array(to_rgb(IOU_COLOURS[0][1]))
    assert IOU_COLOURS[0][0] == 0.7
    assert np.sqrt(((jet - good) ** 2).sum(axis=1)).min() >= 0.5
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    cam = np.zeros((20, 30))
    panels_module.draw_cam_panel(tmp_path / "p.png", image, [("GT", cam)], np.array([[2, 2, 10, 10]]),
                                 pred_boxes=[[(np.array([1, 1, 9, 9]), IOU_COLOURS[0][1])]])
    [figure] = kept_figures
    edges = [(tuple(patch.get_edgecolor()[:3]), patch.get_linewidth()) for patch in figure.axes[1].patches]
    assert ((0.0, 0.0, 0.0), 3.0) in edges and (tuple(good), 1.5) in edges


def test_map_label_names_the_map_method() -> None:
    from types import SimpleNamespace

    from camexp.callbacks.cam_pictures import map_label
    from camexp.maps.registry import map_source

    cam, acol = SimpleNamespace(method=SimpleNamespace(name="cam")), SimpleNamespace(method=SimpleNamespace(name="acol"))
    assert map_label(map_source("cam"), cam) == "CAM"
    assert map_label(map_source("cam"), acol) == "method=acol's own map"
    assert map_label(map_source("gradcam"), cam) == "localization.method=gradcam"

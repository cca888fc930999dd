"""Evaluate saved score maps (one ``.npy`` per image id) against a WSOL metadata split: the
field's offline evaluation, which ``python -m camexp.eval_maps`` runs (see that module for the
file conventions). Bad input raises :class:`~camexp.core.errors.EvalMapsError` naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from camexp.core.errors import EvalMapsError, UserError
from camexp.data.metadata import Metadata, read_metadata
from camexp.localization.box_accuracy import BoxAccuracy
from camexp.localization.boxes import check_boxes, scale_boxes
from camexp.localization.fast import box_sweep, sweep_pool
from camexp.localization.maps import (
    as_size,
    cam_thresholds,
    check_score_map,
    normalize_map,
    quantize_map,
)
from camexp.localization.pxap import (
    pxap_bin_edges,
    pxap_from_histograms,
    pxap_histograms,
)
from camexp.localization.sweep import BoxSweep

T = TypeVar("T")


R = TypeVar("R")


def score_map_path(maps_dir: str | Path, image_id: str) -> Path:
    """``maps_dir/<image_id>.npy``."""
    return Path(maps_dir) / f"{image_id}.npy"


def save_score_map(maps_dir: str | Path, image_id: str, map01: np.ndarray) -> Path:
    """Save one image's map as ``maps_dir/<image_id>.npy`` (folders created), as
    :func:`load_score_map` reads it. ``map01``: the map as a run scores it, resized to its
    evaluation size and min-max normalized (:func:`~camexp.localization.maps.normalize_map`),
    float64, so that ``eval_maps`` at that ``image_size`` gives the run's numbers exactly."""
    from camexp.data.text_files import check_inside

    check_inside(image_id, f"the image id {image_id!r} of a saved map")
    path = score_map_path(maps_dir, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(map01, dtype=np.float64), allow_pickle=False)
    return path


def load_score_map(maps_dir: str | Path, image_id: str) -> np.ndarray:
    """Load and validate the saved map of one image.

    Returns:
        The ``(h, w)`` map as float64.

    Raises:
        EvalMapsError: missing or unreadable file.
        MapError: not 2-D, NaN/inf, or values outside ``[0, 1]``.
    """
    path = score_map_path(maps_dir, image_id)
    if not path.is_file():
        raise EvalMapsError(
            f"image id {image_id!r}: score map {path} not found. Save one .npy per image id of "
            f"the split at maps_dir/<image_id>.npy (here {path.name} under {path.parent}), or fix "
            "maps_dir."
        )
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        what = "the file is empty" if isinstance(err, EOFError) else str(err)
        raise EvalMapsError(
            f"image id {image_id!r}: cannot read {path} as a numpy array ({what}). Save it with "
            "numpy.save(path, map) where map is a 2-D float array."
        ) from None
    check_score_map(arr, where=f"image id {image_id!r} (file {path})", unit_range=True)
    return np.asarray(arr, dtype=np.float64)


def _read_mask(path: Path, image_id: str, size: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise EvalMapsError(
            f"image id {image_id!r}: mask file {path} not found. Set mask_root to the folder the "
            "mask paths of localization.txt are relative to."
        )
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise EvalMapsError(f"image id {image_id!r}: cannot read the mask image {path}.")
    height, width = size
    resized = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    return resized > 0.5


def load_gt_mask(
    mask_root: str | Path,
    image_id: str,
    mask_paths: Sequence[str],
    ignore_path: str | None,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Foreground (union of instance masks) and ignore region of one image, at ``size``.

    Masks are read in grayscale, resized with nearest-neighbour interpolation and thresholded at
    0.5, like the field's loader. The ignore region is the ignore mask minus the foreground.

    Returns:
        ``(foreground, ignore)`` bool ``(H, W)`` arrays (``ignore`` None without ignore mask).
    """
    root = Path(mask_root)
    foreground = np.zeros(size, dtype=bool)
    for rel in mask_paths:
        foreground |= _read_mask(root / rel, image_id, size)
    if not ignore_path:
        return foreground, None
    ignore = _read_mask(root / ignore_path, image_id, size) & ~foreground
    return foreground, ignore


def _parallel_map(func: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """``map`` inline, or over a process pool (:func:`sweep_pool`) when ``workers > 1``."""
    if workers <= 1:
        yield from map(func, items)
        return
    with sweep_pool(workers) as pool:
        yield from pool.map(func, items, chunksize=16)


def header_sizes(meta: Metadata, image_root: str | Path | None) -> dict[str, tuple[int, int]]:
    """Image sizes of the split from the image files' headers (no decoding), for metadata
    whose ``image_sizes.txt`` is absent or empty (as the field publishes some)."""
    from PIL import Image

    if image_root is None:
        raise EvalMapsError(
            f"{meta.folder}: image_sizes.txt is missing or empty, but boxes must be scaled from "
            "the original image size. Pass image_root=<folder the image ids are relative to> "
            "to read the sizes from the images' headers, or add image_sizes.txt (path,w,h)."
        )
    root = Path(image_root).expanduser()
    sizes: dict[str, tuple[int, int]] = {}
    for image_id in meta.image_ids:
        path = root / image_id
        try:
            with Image.open(path) as image:
                sizes[image_id] = image.size
        except (OSError, ValueError) as err:
            raise EvalMapsError(
                f"image id {image_id!r}: cannot read the size of {path} ({err}); image_sizes.txt "
                f"of {meta.folder} is empty. Fix image_root, or restore the image."
            ) from None
    return sizes


def check_paths_inside(meta: Metadata) -> None:
    """Image ids and mask paths must stay inside maps_dir / mask_root (no '..', not absolute),
    the rule of the dataset readers."""
    from camexp.data.text_files import check_inside

    try:
        for image_id in meta.image_ids:
            check_inside(image_id, meta.where("image_ids.txt", image_id))
        for image_id, paths in (meta.mask_paths or {}).items():
            ignore = (meta.ignore_paths or {}).get(image_id)
            for path in [*paths, *([ignore] if ignore else [])]:
                check_inside(path, f"{meta.folder / 'localization.txt'} (image {image_id!r})")
    except UserError as err:
        raise EvalMapsError(str(err)) from None


def extra_maps(maps_dir: Path, image_ids: Sequence[str]) -> int:
    """``.npy`` files under ``maps_dir`` that no image id of the split names."""
    wanted = {f"{image_id}.npy" for image_id in image_ids}
    return sum(1 for path in maps_dir.rglob("*.npy")
               if path.relative_to(maps_dir).as_posix() not in wanted)


def _gt_boxes_at_size(meta: Metadata, image_id: str, size: tuple[int, int],
                      sizes: dict[str, tuple[int, int]]) -> np.ndarray:
    boxes = meta.boxes[image_id]  # type: ignore[index]
    scaled = scale_boxes(boxes, sizes[image_id], size)
    height, width = size
    where = f"image id {image_id!r} ({meta.folder / 'localization.txt'}, scaled to {size})"
    return check_boxes(scaled, width=width, height=height, where=where).astype(np.int64)


def _box_job(
    job: tuple[str, np.ndarray],
    maps_dir: Path,
    size: tuple[int, int],
    thresholds: np.ndarray,
    sweep_ious: list[float],
) -> BoxSweep:
    """Load, prepare and sweep one map (top level so that worker processes can run it)."""
    image_id, gt = job
    quantized = quantize_map(normalize_map(load_score_map(maps_dir, image_id), size))
    return box_sweep(quantized, gt, thresholds, sweep_ious)


def _evaluate_boxes(
    meta: Metadata,
    maps_dir: Path,
    size: tuple[int, int],
    thresholds: np.ndarray,
    iou_thresholds: list[float],
    multi_contour: bool,
    workers: int,
    image_root: str | Path | None = None,
) -> dict[str, Any]:
    """MaxBoxAcc (V1, IoU 50) and MaxBoxAccV2 over the split, one sweep per map."""
    accuracy = BoxAccuracy(thresholds, iou_thresholds, multi_contour)
    sizes = meta.image_sizes if meta.image_sizes is not None else header_sizes(meta, image_root)
    jobs = [(image_id, _gt_boxes_at_size(meta, image_id, size, sizes)) for image_id in meta.image_ids]
    run_one = partial(
        _box_job,
        maps_dir=maps_dir,
        size=size,
        thresholds=thresholds,
        sweep_ious=accuracy.sweep_ious,
    )
    for sweep in _parallel_map(run_one, jobs, workers):
        accuracy.add_sweep(sweep)
    return accuracy.results()


def _mask_job(
    job: tuple[str, list[str], str | None],
    maps_dir: Path,
    mask_root: Path,
    size: tuple[int, int],
    edges: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative histograms of one map (top level for worker processes)."""
    image_id, mask_paths, ignore_path = job
    fg, ignore = load_gt_mask(mask_root, image_id, mask_paths, ignore_path, size)
    map01 = normalize_map(load_score_map(maps_dir, image_id), size)
    return pxap_histograms(map01, fg, ignore, edges)


def _evaluate_masks(
    meta: Metadata,
    maps_dir: Path,
    mask_root: Path,
    size: tuple[int, int],
    interval: float,
    workers: int,
) -> dict[str, Any]:
    """PxAP over the split from pooled histograms."""
    edges = pxap_bin_edges(interval)
    jobs = [
        (image_id, meta.mask_paths[image_id], meta.ignore_paths[image_id])  # type: ignore[index]
        for image_id in meta.image_ids
    ]
    run_one = partial(_mask_job, maps_dir=maps_dir, mask_root=mask_root, size=size, edges=edges)
    pos = np.zeros(len(edges) - 1, dtype=np.int64)
    neg = np.zeros_like(pos)
    for part_pos, part_neg in _parallel_map(run_one, jobs, workers):
        pos += part_pos
        neg += part_neg
    return {"PxAP": pxap_from_histograms(pos, neg)}


def evaluate_maps(
    maps_dir: str | Path,
    metadata_dir: str | Path,
    split: str = "test",
    cam_curve_interval: float = 0.001,
    iou_thresholds: Sequence[float] = (30, 50, 70),
    multi_contour: bool = True,
    image_size: int | Sequence[int] = 224,
    mask_root: str | Path | None = None,
    workers: int = 1,
    image_root: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate the maps of one split.

    Args:
        maps_dir: folder of ``<image_id>.npy`` maps.
        metadata_dir: folder holding the split folders, or the split folder itself.
        split: split folder name (``train``, ``val``, ``test``).
        cam_curve_interval: CAM threshold spacing (1000 thresholds at 0.001).
        iou_thresholds: MaxBoxAccV2 IoU thresholds in percent.
        multi_contour: MaxBoxAccV2 uses all contours (True, the field's V2) or the largest.
        image_size: evaluation size, int or ``(H, W)``.
        mask_root: folder the mask paths are relative to (mask metadata only).
        workers: processes over images (1 = inline; a pool costs a few seconds to start).
        image_root: folder of the images, read for their sizes (headers only) when
            ``image_sizes.txt`` is absent or empty and boxes must be scaled.

    Returns:
        JSON-ready dict: the metrics (see the module docstring) plus ``num_images``, ``split``,
        ``metadata_dir``, ``maps_dir``, ``image_size``, ``cam_curve_interval``,
        ``iou_thresholds`` and ``multi_contour``.

    Raises:
        One of :data:`INPUT_ERRORS` for bad input.
    """
    maps_path = Path(maps_dir).expanduser()
    if not maps_path.is_dir():
        raise EvalMapsError(f"maps_dir {maps_path} is not a folder; point it at the saved maps.")
    meta = read_metadata(metadata_dir, split)
    check_paths_inside(meta)
    try:
        size = as_size(image_size)
        thresholds = cam_thresholds(cam_curve_interval)
        ious = [float(t) for t in iou_thresholds]
        if not ious or any(not 0 < t <= 100 for t in ious):
            raise ValueError(f"iou_thresholds must be percentages in (0, 100]; got {ious}.")
    except ValueError as err:
        raise EvalMapsError(str(err)) from None
    result: dict[str, Any] = {}
    if meta.has_boxes:
        result.update(
            _evaluate_boxes(meta, maps_path, size, thresholds, ious, multi_contour, workers,
                            image_root)
        )
    if meta.has_masks:
        if mask_root is None:
            raise EvalMapsError(
                f"{meta.folder / 'localization.txt'} lists masks, so PxAP needs mask_root: set "
                "mask_root=<folder the mask paths are relative to>."
            )
        result.update(
            _evaluate_masks(
                meta, maps_path, Path(mask_root).expanduser(), size, cam_curve_interval, workers
            )
        )
    if not (meta.has_boxes or meta.has_masks):
        raise EvalMapsError(
            f"{meta.folder}: no localization.txt, so there is nothing to evaluate. Add boxes "
            "(path,x0,y0,x1,y1) or masks (path,mask_path,ignore_path)."
        )
    result.update(
        {
            "num_images": len(meta.image_ids),
            "extra_maps": extra_maps(maps_path, meta.image_ids),
            "split": split,
            "metadata_dir": str(meta.folder),
            "maps_dir": str(maps_path),
            "image_size": list(size),
            "cam_curve_interval": float(cam_curve_interval),
            "iou_thresholds": ious,
            "multi_contour": bool(multi_contour),
        }
    )
    return result


def write_result(result: dict[str, Any], output: str | Path) -> Path:
    """Write the result as indented JSON (parent folders created); returns the path."""
    path = Path(output).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path

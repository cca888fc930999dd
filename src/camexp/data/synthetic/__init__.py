"""Embedded default dataset: a seeded synthetic WSOL set written in the CUB-200-2011 layout.

Why it exists: the real CUB/ILSVRC downloads are large and licensed separately, yet every part of
the pipeline (training, CAM extraction, box evaluation) needs *some* localization data to run out of
the box, in CI and on a laptop CPU. This module draws a small dataset whose ground truth is exact
(each object is a pasted binary mask, so its box and segmentation are known to the pixel) and writes
it once in the official CUB-200-2011 on-disk layout, so the ordinary CUB reader reads it unchanged.

What an image looks like: a cluttered, low-contrast textured background (value noise, lines, soft
blobs, small irregular distractor polygons that match no class shape) with one object, or, with
probability ``two_object_prob``, two objects of the same class that overlap at most lightly. A class
is a fixed (shape, texture, colour palette) triple. Palettes are drawn from one shared pool and
overlap between classes, and distractors use the same colours, so colour alone neither names the
class nor finds the object: shape and texture do.

Layout written under ``<root>/CUB_200_2011/`` (as the official tarball plus its separate
segmentations download; ``parts/`` is optional in CUB and not written)::

    images/<class_dir>/<name>.jpg          e.g. images/001.Disc_Striped/Disc_Striped_0001.jpg
    segmentations/<class_dir>/<name>.png   8-bit grey, 0 background / 255 object (union of objects)
    classes.txt                            <class_id> <class_dir>
    images.txt                             <image_id> <class_dir>/<name>.jpg   (ids 1..N)
    image_class_labels.txt                 <image_id> <class_id>
    train_test_split.txt                   <image_id> <1 train | 0 test>
    bounding_boxes.txt                     <image_id> <x> <y> <width> <height>   (floats, pixels)
    synthetic.json                         the spec, format version and class list

Boxes are the tight boxes of each object's *visible* mask pixels: ``x, y`` is the top-left mask
pixel, ``width = max_col - min_col + 1`` (height likewise), written as floats like CUB
(``60.0 27.0 325.0 304.0``). They are computed from the mask, never from the (lossy) JPEG.

**The one extension of the official format:** an image with two objects has TWO lines in
``bounding_boxes.txt`` with the same ``image_id`` (one per object, in paste order). Official CUB has
exactly one line per image; a reader that keeps only the first line per id still works, and one
that collects all lines per id gets every object (as ILSVRC's multi-box evaluation expects).

Determinism: every image is drawn from ``np.random.default_rng([seed, image_index])``, so the same
spec gives byte-identical files (JPEG quality fixed, 4:4:4 chroma, no metadata) in any order, and
different seeds give different images. ``ensure_synthetic_cub`` writes into a temporary sibling
folder and renames it into place, so a crash never leaves a half-written dataset that is reused.

Command line: ``python -m camexp.data.synthetic --out DIR [--seed N ...]`` writes
``DIR/CUB_200_2011``.
"""

from camexp.data.synthetic.classes import CLASS_CATALOGUE, SyntheticClass
from camexp.data.synthetic.drawing import SyntheticSample, generate_sample
from camexp.data.synthetic.spec import (
           CUB_DIRNAME,
           FORMAT_VERSION,
           SyntheticSpec,
           class_dirs,
           spec_hash,
)
from camexp.data.synthetic.writing import ensure_synthetic_cub, write_synthetic_cub

__all__ = ["CLASS_CATALOGUE", "CUB_DIRNAME", "FORMAT_VERSION", "SyntheticClass", "SyntheticSample",
           "SyntheticSpec", "class_dirs", "ensure_synthetic_cub", "generate_sample", "spec_hash",
           "write_synthetic_cub"]

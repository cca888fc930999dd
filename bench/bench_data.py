"""Input pipeline throughput: camexp's WSOLDataset against torchvision ImageFolder + PIL.

JPEGs of ImageNet-like size (about 500 x 375, quality 90, photo-like content) are written to a
temporary ImageFolder layout. Both pipelines produce 224 x 224 uint8 tensors:

* train: resize to 256 x 256, random 224 crop, random flip;
* eval: resize to 224 x 224.

Measured per worker: one process with one torch thread (what each DataLoader worker gets),
the two pipelines alternately, ``--rounds`` times, best round kept. Target: camexp >= 1.5x.

    python bench/bench_data.py [--images 160] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import ImageFolder

from camexp.data.dataset import WSOLDataset
from camexp.data.transforms import EvalTransform, TrainTransform

warnings.filterwarnings("ignore", category=DeprecationWarning)


def write_images(root: Path, count: int, classes: int = 4) -> list[Path]:
    """Photo-like JPEGs (smooth shapes, texture, noise) of sizes around 500 x 375."""
    rng = np.random.default_rng(0)
    files = []
    for index in range(count):
        width, height = int(rng.integers(440, 560)), int(rng.integers(330, 420))
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        pixels = np.empty((height, width, 3), dtype=np.float32)
        for channel in range(3):
            fx, fy, phase = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.3)]
            pixels[..., channel] = 128 + 90 * np.sin(fx * x + phase) * np.cos(fy * y)
        cx, cy, r = rng.uniform(100, 400), rng.uniform(80, 300), rng.uniform(40, 120)
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        pixels += rng.normal(0, 12, pixels.shape)
        path = root / f"class_{index % classes}" / f"img_{index:05d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        files.append(path)
    return files


def rate(get, count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        get(index)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root, args.images)
        folder_train = ImageFolder(tmp, transform=transforms.Compose([
            transforms.Resize((256, 256)), transforms.RandomCrop(224),
            transforms.RandomHorizontalFlip(), transforms.PILToTensor()]))
        folder_eval = ImageFolder(tmp, transform=transforms.Compose([
            transforms.Resize((224, 224)), transforms.PILToTensor()]))
        files = [Path(p) for p, _ in folder_train.samples]
        labels = np.array([label for _, label in folder_train.samples])
        boxes = [np.array([[10.0, 10.0, 200.0, 150.0]])] * len(files)
        ids = [str(f.relative_to(root)) for f in files]
        ours_train = WSOLDataset(files, ids, labels, boxes, TrainTransform((256, 256), 224))
        ours_eval = WSOLDataset(files, ids, labels, boxes, EvalTransform((224, 224)))
        n = len(files)
        assert ours_train[(0, 0)]["image"].shape == folder_train[0][0].shape == (3, 224, 224)
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, get in (("train camexp", lambda i: ours_train[(0, i)]),
                              ("train ImageFolder+PIL", lambda i: folder_train[i]),
                              ("eval camexp", lambda i: ours_eval[i]),
                              ("eval ImageFolder+PIL", lambda i: folder_eval[i])):
                best[name] = max(best.get(name, 0.0), rate(get, n))
    print(f"Input pipeline, {n} JPEGs ~500x375 -> 224x224 uint8, images/s per worker "
          f"(1 process, 1 thread), best of {args.rounds}:")
    for stage in ("train", "eval"):
        ours, theirs = best[f"{stage} camexp"], best[f"{stage} ImageFolder+PIL"]
        print(f"  {stage:5s}  camexp {ours:7.1f}   ImageFolder+PIL {theirs:7.1f}   "
              f"ratio {ours / theirs:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()

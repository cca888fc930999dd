"""The transformer methods' cost against CAM on the same transformer (docs/methods.md#transformers).

1. Training step of TS-CAM, SCM and SAT relative to CAM: the same transformer (the CPU demo's
   ``minivit`` unless ``--arch``), the same in-memory batch, AdamW as its config trains it; one
   step = forward, loss, backward, optimizer step, as ``CAMClassifier.training_step`` runs
   them. Interleaved rounds in one run, the median round reported.
2. Maps per second at evaluation (ground truth + top-5 classes per image, 6 maps): CAM (one
   forward pass, the head's class maps), TS-CAM (the same pass with the attention read),
   attention rollout (one extra forward pass with the attention read, :mod:`camexp.maps.rollout`)
   and Grad-CAM on the token grid, relative to CAM.

Measured side by side on the machine at hand; the output states its conditions (threads, load).

    python bench/bench_transformers.py [--steps 10] [--rounds 3] [--batch-size 32] [--size 112]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from types import SimpleNamespace

import timm
import torch

from bench_methods import interleaved_rates
from bench_posthoc import timed
from camexp.data.transforms import normalize_images
from camexp.maps.registry import map_source
from camexp.modules.cam_classifier import CAMClassifier

METHODS = {
    "cam": {"_target_": "camexp.methods.cam.CAM"},
    "tscam": {"_target_": "camexp.methods.tscam.TSCAM"},
    "scm": {"_target_": "camexp.methods.scm.SCM"},
    "sat": {"_target_": "camexp.methods.sat.SAT"},
}
ADAMW = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05, "head_lr_mult": 1.0}


def make(method: dict, arch: str, size: int, classes: int) -> tuple[CAMClassifier, torch.optim.Optimizer]:
    torch.manual_seed(0)
    module = CAMClassifier(arch, classes, head={"num_convs": 0}, method=method, optim=ADAMW,
                           scheduler={"name": "none"}, backbone={"img_size": size, "drop_path": 0.0})
    module.net.train()
    return module, module.configure_optimizers()


def conditions() -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"load average {load} (1/5/15 min); torch {torch.__version__}, timm {timm.__version__}")


def training_costs(args, batch: dict) -> None:
    built = {name: make(config, args.arch, args.size, args.classes) for name, config in METHODS.items()}
    rates = interleaved_rates(built, batch, args.rounds, args.steps)
    cam = statistics.median(rates["cam"])
    print(f"training step per method, {args.arch}, batch {args.batch_size}, {args.size} px, AdamW, "
          f"median of {args.rounds} interleaved rounds x {args.steps} steps")
    print(f"{'method':<8} {'steps/s':>8} {'ms/step':>8} {'cost vs cam':>12}")
    for name in METHODS:
        rate = statistics.median(rates[name])
        print(f"{name:<8} {rate:8.2f} {1000 / rate:8.1f} {cam / rate:11.2f}x")


def map_rates(args) -> None:
    tscam, _ = make(METHODS["tscam"], args.arch, args.size, args.classes)
    module, net = tscam, tscam.net.eval()
    generator = torch.Generator().manual_seed(1)
    images = normalize_images(torch.randint(0, 256, (args.map_batch, 3, args.size, args.size),
                                            dtype=torch.uint8, generator=generator))
    with torch.no_grad():
        logits = net(images)
    labels = torch.randint(0, args.classes, (args.map_batch,), generator=generator)
    classes = torch.cat([labels[:, None], logits.topk(5, dim=1).indices], dim=1)
    batch = {"input": images, "label": labels}
    count = classes.numel()

    def cam() -> None:
        with torch.no_grad():
            features = net.features(images)
            net.cams(features, classes)

    def tscam_maps() -> None:
        with torch.no_grad():
            outputs = module.method.forward(net, images, labels)
            module.method.maps(net, outputs, classes)

    trainer = SimpleNamespace(datamodule=SimpleNamespace(eval_transform=SimpleNamespace(size=(args.size, args.size))),
                              is_global_zero=False, sanity_checking=False)
    holder = SimpleNamespace(net=net, device=torch.device("cpu"))
    sources = {name: map_source(name) for name in ("rollout", "gradcam")}
    for source in sources.values():
        source.start("test", trainer, holder)
    rates = {"cam": count / timed(cam, args.rounds), "tscam": count / timed(tscam_maps, args.rounds)}
    for name, source in sources.items():
        rates[name] = count / timed(lambda source=source: source.class_maps(holder, {}, batch, classes), args.rounds)
        source.close()
    print(f"maps per second at evaluation, {args.arch}, batch {args.map_batch}, {args.size} px, "
          f"{classes.shape[1]} maps per image, median of {args.rounds} calls")
    print(f"{'map':<10} {'maps/s':>10} {'vs cam':>8}")
    for name, rate in rates.items():
        print(f"{name:<10} {rate:10.1f} {rate / rates['cam']:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--map-batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--arch", default="minivit")
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    print(f"conditions: {conditions()}")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8,
                           generator=generator)
    batch = {"input": normalize_images(images),
             "label": torch.randint(0, args.classes, (args.batch_size,), generator=generator)}
    training_costs(args, batch)
    map_rates(args)
    print(f"conditions at the end: {conditions()}")


if __name__ == "__main__":
    main()

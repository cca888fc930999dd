"""Training-step cost of each WSOL method relative to CAM (docs/methods.md), BAS and NL-CCAM
included.

Same network (the demo's tiny CAM net unless ``--arch``), same in-memory batch, same
optimizer: one step = the method's batch transform, forward, loss, backward and SGD step, as
``CAMClassifier.training_step`` runs them. The methods are measured in interleaved rounds in
one run, so the ratios compare like with like on this machine; the median round is reported.

    python bench/bench_methods.py [--steps 20] [--rounds 3] [--batch-size 32] [--size 112] [--arch tiny]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from camexp.data.transforms import normalize_images
from camexp.modules.cam_classifier import CAMClassifier

METHODS = {
    "cam": {"_target_": "camexp.methods.cam.CAM"},
    "has": {"_target_": "camexp.methods.has.HideAndSeek"},
    "cutmix": {"_target_": "camexp.methods.cutmix.CutMix"},
    "adl": {"_target_": "camexp.methods.adl.ADL"},
    "acol": {"_target_": "camexp.methods.acol.ACoL"},
    "spg": {"_target_": "camexp.methods.spg.SPG"},
    "bas": {"_target_": "camexp.methods.bas.BAS"},
    "nlccam": {"_target_": "camexp.methods.nlccam.NLCCAM"},
}


def make(method: dict, arch: str, num_classes: int, width: int) -> tuple[CAMClassifier, torch.optim.Optimizer]:
    torch.manual_seed(0)
    module = CAMClassifier(arch, num_classes, head={"num_convs": 1, "width": width}, method=method,
                           optim={"lr": 0.01, "head_lr_mult": 1.0}, scheduler={"name": "none"})
    module.net.train()
    return module, torch.optim.SGD(module.net.parameters(), lr=0.01, momentum=0.9)


def steps_per_second(module: CAMClassifier, optimizer, batch: dict, steps: int) -> float:
    """Training steps per second, the method's hooks exactly as the module's training step."""
    method, net = module.method, module.net
    start = time.perf_counter()
    for step in range(steps):
        method.rng = np.random.default_rng(step)
        current = method.transform_batch(dict(batch))
        outputs = method.forward(net, current["input"], current["label"])
        loss = method.loss(net, outputs, current)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def conditions() -> str:
    """The machine's conditions, printed with the ratios: a shared machine's load moves the
    times (each round runs every method, so the ratios are compared under one load)."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{os.cpu_count()} CPUs, load average (1, 5, 15 min) {load}, torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()} kernels), {torch.get_num_threads()} threads")


def interleaved_rates(built: dict, batch: dict, rounds: int, steps: int) -> dict[str, list[float]]:
    """Steps per second of each built ``(module, optimizer)``, one warm-up each, then ``rounds``
    interleaved rounds of ``steps`` steps (so a change of load touches every method alike)."""
    for module, optimizer in built.values():
        steps_per_second(module, optimizer, batch, 2)
    rates: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, (module, optimizer) in built.items():
            rates[name].append(steps_per_second(module, optimizer, batch, steps))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--width", type=int, default=128, help="head width")
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8,
                           generator=generator)
    batch = {"input": normalize_images(images),
             "label": torch.randint(0, args.classes, (args.batch_size,), generator=generator)}
    before = conditions()
    built = {name: make(config, args.arch, args.classes, args.width) for name, config in METHODS.items()}
    rates = interleaved_rates(built, batch, args.rounds, args.steps)
    cam = statistics.median(rates["cam"])
    print(f"training step per method, {args.arch} net, batch {args.batch_size}, {args.size} px, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} rounds x {args.steps} steps")
    print(f"conditions at the start: {before}")
    print(f"conditions at the end:   {conditions()}")
    print(f"{'method':<8} {'steps/s':>8} {'ms/step':>8} {'cost vs cam':>12}")
    for name in METHODS:
        rate = statistics.median(rates[name])
        print(f"{name:<8} {rate:8.2f} {1000 / rate:8.1f} {cam / rate:11.2f}x")


if __name__ == "__main__":
    main()

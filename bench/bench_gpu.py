"""GPU throughput: bf16, channels-last, torch.compile, and the input pipeline, side by side.

On one CUDA GPU, in one run:

1. Training images/s of VGG16-GAP and ResNet50-GAP (camexp's networks, 1000 classes, head of
   one 3x3 conv of 1024) at 224 px on synthetic batches already on the GPU, for fp32, bf16
   (autocast, as ``trainer.precision=bf16-mixed``), bf16 + channels-last
   (``model.channels_last=true``) and bf16 + channels-last + ``model.compile=true``; each
   as a ratio to fp32, with the memory peak of each.
2. The input pipeline: images/s of camexp's training loader over the embedded synthetic
   dataset written at ``--image-size`` px (JPEG, resize 256, crop 224, flip), decoded by
   ``--workers`` CPU workers (``data.decode_device=cpu``) vs by the GPU
   (``data.decode_device=cuda``, the same workers only reading files), up to the normalized
   batch on the GPU; the ratio, and each against the bf16 + channels-last training rate.

Without a CUDA GPU it says so and exits 0 (nothing is measured).

    python bench/bench_gpu.py [--batch-size 64] [--steps 30] [--warmup 5] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGENET_TRAIN_IMAGES = 1_281_167
VARIANTS = (  # name, bf16, channels_last, compile
    ("fp32", False, False, False),
    ("bf16", True, False, False),
    ("bf16+channels-last", True, True, False),
    ("bf16+channels-last+compile", True, True, True),
)
NETWORKS = (("VGG16-GAP", "vgg16"), ("ResNet50-GAP", "resnet50"))


def no_gpu_message() -> str | None:
    if not torch.cuda.is_available():
        return ("bench_gpu: no CUDA GPU is visible (torch.cuda.is_available() is False), so "
                "nothing is measured. Run `make bench-gpu` on a machine with one.")
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` (compiling, cuDNN autotune)."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - start


def train_rate(arch: str, bf16: bool, channels_last: bool, compiled: bool, batch: int,
               steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """(images/s, peak GiB) of forward + backward + SGD steps of camexp's CAM network."""
    from camexp.data.transforms import normalize_images
    from camexp.modules.cam_classifier import CAMClassifier

    torch.manual_seed(0)
    torch._dynamo.reset()  # each variant compiles afresh, as a new run would
    module = CAMClassifier(arch, 1000, head={"num_convs": 1, "width": 1024},
                           channels_last=channels_last, compile=compiled)
    net = module.net.to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8, device=device,
                           generator=generator)
    labels = torch.randint(0, 1000, (batch,), device=device, generator=generator)

    def step() -> None:
        x = normalize_images(images)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _timed(step, steps, warmup, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return batch * steps / seconds, peak


def pipeline_rate(root: Path, synthetic: dict, decode_device: str, workers: int, batch: int,
                  batches: int, device: torch.device) -> float:
    """Images/s of camexp's training loader, up to the normalized batch on ``device``."""
    from camexp.data.datamodule import CUBDataModule
    from camexp.data.transforms import normalize_images

    datamodule = CUBDataModule(str(root), num_classes=10, synthetic=synthetic, batch_size=batch,
                               num_workers=workers, pin_memory=True, persistent_workers=False,
                               val_fraction=0.1, resize_size=(256, 256), crop_size=224,
                               eval_size=(224, 224), seed=0, decode_device=decode_device)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if decode_device == "cuda" and not datamodule.decode_on_device:
        raise RuntimeError("the GPU JPEG decoder is not available (see the notice above)")
    loader = datamodule.train_dataloader()
    seen, epoch, start = 0, 0, None
    while seen < batches * batch:
        loader.sampler.set_epoch(epoch)
        for batch_data in loader:
            moved = datamodule.transfer_batch_to_device(batch_data, device, 0)
            normalize_images(moved["image"])
            if start is None:  # the first batch pays the workers' start-up
                _sync(device)
                start = time.perf_counter()
                continue
            seen += len(moved["label"])
            if seen >= batches * batch:
                break
        epoch += 1
    _sync(device)
    return seen / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="median over rounds, variants alternating")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: camexp's auto)")
    parser.add_argument("--image-size", type=int, default=384, help="synthetic JPEG side in px")
    parser.add_argument("--images", type=int, default=1500, help="synthetic training images")
    parser.add_argument("--pipeline-batches", type=int, default=40)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--archs", default="vgg16,resnet50", help="model.arch values to time")
    parser.add_argument("--check-on-cpu", action="store_true",
                        help="run the script's code on the CPU (no figure means anything)")
    args = parser.parse_args()

    message = None if args.check_on_cpu else no_gpu_message()
    if message:
        print(message)
        return 0
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities")
    torch.backends.cudnn.benchmark = True
    if args.check_on_cpu:
        device, name = torch.device("cpu"), "CPU (--check-on-cpu: not a measurement)"
        import camexp.data.wsol as wsol

        wsol.device_decoder_problem = lambda device: None  # the device path, run on the CPU
    else:
        device = torch.device("cuda", torch.cuda.current_device())
        props = torch.cuda.get_device_properties(device)
        name = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    print(f"GPU: {name}, torch {torch.__version__}, "
          f"batch {args.batch_size} at 224 px, {args.steps} timed steps after {args.warmup}, "
          f"median of {args.rounds} rounds")

    best_bf16_cl: dict[str, float] = {}
    labels = dict((arch, label) for label, arch in NETWORKS)
    for arch in args.archs.split(","):
        label = labels.get(arch, f"{arch}-GAP")
        rates: dict[str, list[float]] = {name: [] for name, *_ in VARIANTS}
        peaks: dict[str, float] = {}
        failed: dict[str, str] = {}
        for _ in range(args.rounds):
            for name, bf16, channels_last, compiled in VARIANTS:
                if name in failed:
                    continue
                try:
                    rate, peak = train_rate(arch, bf16, channels_last, compiled, args.batch_size,
                                            args.steps, args.warmup, device)
                except Exception as error:  # a compile failure is a result, not a crash
                    failed[name] = f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"
                    continue
                rates[name].append(rate)
                peaks[name] = max(peaks.get(name, 0.0), peak)
        fp32 = statistics.median(rates["fp32"])
        print(f"\n{label} training (forward + backward + SGD step), images/s:")
        for name, *_ in VARIANTS:
            if name in failed:
                print(f"  {name:28s} failed: {failed[name]}")
                continue
            rate = statistics.median(rates[name])
            print(f"  {name:28s} {rate:9.1f}   x{rate / fp32:5.2f} of fp32   peak {peaks[name]:6.2f} GiB")
        if rates["bf16+channels-last"]:
            best_bf16_cl[label] = statistics.median(rates["bf16+channels-last"])

    if args.skip_pipeline:
        return 0
    from camexp.data.wsol import auto_workers

    workers = auto_workers(1) if args.workers is None else args.workers
    per_class = max(1, args.images // 9)  # 10 classes, a tenth held out for validation
    synthetic = {"num_classes": 10, "train_per_class": per_class, "test_per_class": 1,
                 "image_size": args.image_size, "seed": 0}
    with tempfile.TemporaryDirectory(prefix="camexp-bench-gpu-") as tmp:
        print(f"\nInput pipeline: {per_class * 9} synthetic JPEGs of {args.image_size} px "
              f"(written once), {workers} workers, batch {args.batch_size}, to the normalized "
              "batch on the GPU:")
        results = {}
        for decode in ("cpu", "cuda"):
            try:
                results[decode] = pipeline_rate(Path(tmp), synthetic, decode, workers, args.batch_size,
                                                args.pipeline_batches, device)
            except Exception as error:
                print(f"  data.decode_device={decode}: failed: {type(error).__name__}: {error}")
        for decode, rate in results.items():
            print(f"  data.decode_device={decode:4s} {rate:9.1f} images/s")
        if len(results) == 2:
            print(f"  GPU decode / CPU workers: x{results['cuda'] / results['cpu']:.2f}")
        for label, rate in best_bf16_cl.items():
            for decode, feed in results.items():
                bound = min(rate, feed)
                hours = IMAGENET_TRAIN_IMAGES / bound / 3600
                print(f"  {label} bf16+channels-last with decode={decode}: the input is "
                      f"{'NOT ' if feed >= rate else ''}the bottleneck ({feed:.0f} vs {rate:.0f} "
                      f"images/s); one ImageNet epoch on this GPU ~ {hours:.2f} h "
                      "(a projection from these rates, not a timed epoch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

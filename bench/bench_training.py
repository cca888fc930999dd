"""Training throughput: camexp's LightningModule + Trainer against a plain PyTorch loop.

Same network (the demo's tiny CAM net), same in-memory batches, same optimizer and batch
size, on this CPU, measured alternately in one run. Target: Lightning within 5% of the
plain loop (ratio >= 0.95).

    python bench/bench_training.py [--steps 60] [--rounds 3] [--batch-size 32] [--size 112]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from camexp.data.dataset import collate
from camexp.data.transforms import normalize_images
from camexp.modules.cam_classifier import CAMClassifier


class InMemoryImages(Dataset):
    """Random uint8 images with labels and one box each, in camexp's item format."""

    def __init__(self, count: int, size: int, num_classes: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8,
                                    generator=generator)
        self.labels = torch.randint(0, num_classes, (count,), generator=generator)
        self.box = torch.tensor([[0.0, 0.0, size - 1.0, size - 1.0]])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": int(self.labels[index]), "boxes": self.box,
                "image_id": str(index), "index": index}


def make_module(num_classes: int) -> CAMClassifier:
    torch.manual_seed(0)
    return CAMClassifier("tiny", num_classes, head={"num_convs": 1, "width": 128},
                         optim={"lr": 0.05, "head_lr_mult": 1.0}, scheduler={"name": "none"})


def plain_loop(loader: DataLoader, num_classes: int, steps: int) -> float:
    """Images per second of a hand-written loop doing what the module's training step does."""
    module = make_module(num_classes)
    net = module.net.train()
    optimizer = module.configure_optimizers()
    seen = 0
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step == steps:
            break
        logits = net(normalize_images(batch["image"]))
        loss = F.cross_entropy(logits, batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(logits)
    return seen / (time.perf_counter() - start)


class Timer(L.Callback):
    """Times the training batches only (not the Trainer's set-up and tear-down)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seen = 0
        self.elapsed = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += len(batch["label"])
        self.elapsed = time.perf_counter() - self.start


def lightning_loop(loader: DataLoader, num_classes: int, steps: int) -> float:
    """Images per second of ``Trainer.fit`` on the same batches."""
    module = make_module(num_classes)
    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=loader)
    return timer.seen / timer.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    num_classes = 10
    dataset = InMemoryImages(args.steps * args.batch_size, args.size, num_classes)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, collate_fn=collate)
    plain_loop(loader, num_classes, 5)  # warm-up: allocator, oneDNN kernels
    lightning_loop(loader, num_classes, 5)

    plain, lightning = [], []
    for _ in range(args.rounds):  # alternate, so drifts in machine load hit both alike
        plain.append(plain_loop(loader, num_classes, args.steps))
        lightning.append(lightning_loop(loader, num_classes, args.steps))
    # The best round is the least disturbed by other processes; the median is shown too.
    plain_rate, lightning_rate = max(plain), max(lightning)
    ratio = lightning_rate / plain_rate
    median_ratio = statistics.median(lightning) / statistics.median(plain)
    print(f"training throughput, tiny CAM net, batch {args.batch_size}, {args.size}px, "
          f"{torch.get_num_threads()} threads, best of {args.rounds} alternating rounds x "
          f"{args.steps} steps")
    print(f"  plain PyTorch loop   : {plain_rate:8.1f} images/s  (rounds: "
          f"{', '.join(f'{r:.1f}' for r in plain)})")
    print(f"  Lightning + camexp   : {lightning_rate:8.1f} images/s  (rounds: "
          f"{', '.join(f'{r:.1f}' for r in lightning)})")
    verdict = "meets" if ratio >= 0.95 else "MISSES"
    print(f"  ratio Lightning/plain: {ratio:.3f} best-of, {median_ratio:.3f} median  "
          f"({verdict} the target >= 0.95)")


if __name__ == "__main__":
    main()

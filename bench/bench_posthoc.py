"""Maps per second of each post-hoc method relative to CAM, on this CPU.

Same network (the demo's tiny CAM net, 10 classes, head of 128 channels), same batch of
images, the maps evaluation scores: ground truth + top-5 classes per image (6 maps). CAM is
the forward pass plus ``CAMNet.cams``; each post-hoc method is
:class:`camexp.maps.posthoc.PosthocMaps` on the head (its default target layer). No target:
the table says what a method costs against CAM (Score-CAM and Ablation-CAM make one forward
pass per channel: expect ratios of 1/100 and below).

    python bench/bench_posthoc.py [--batch-size 4] [--size 64] [--rounds 3] [--methods gradcam,scorecam]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from camexp.maps.posthoc import PER_CHANNEL, POSTHOC_METHODS, PosthocMaps
from camexp.models import CAMNet


def timed(function, rounds: int) -> float:
    """Median seconds of ``rounds`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(POSTHOC_METHODS))
    args = parser.parse_args()
    torch.manual_seed(0)
    net = CAMNet("tiny", 10, head_num_convs=1, head_width=128).eval()
    images = torch.randn(args.batch_size, 3, args.size, args.size)
    with torch.no_grad():
        logits = net(images)
    labels = torch.randint(0, 10, (args.batch_size,))
    classes = torch.cat([labels[:, None], logits.topk(5, dim=1).indices], dim=1)
    maps_per_call = classes.numel()

    def cam() -> None:
        with torch.no_grad():
            features = net.features(images)
            net.cams(features, classes)

    cam_rate = maps_per_call / timed(cam, args.rounds)
    print(f"tiny CAM net, batch {args.batch_size}, {args.size} px, {classes.shape[1]} maps per image, "
          f"CPU threads {torch.get_num_threads()}")
    print(f"{'method':<20} {'maps/s':>10} {'vs CAM':>10}")
    print(f"{'cam':<20} {cam_rate:>10.1f} {1.0:>10.4f}")
    for method in args.methods.split(","):
        maps = PosthocMaps(net, method, net.head, batch_size=32)
        rounds = 1 if method in PER_CHANNEL else args.rounds
        rate = maps_per_call / timed(lambda maps=maps: maps(images, classes), rounds)
        maps.close()
        print(f"{method:<20} {rate:>10.1f} {rate / cam_rate:>10.4f}")


if __name__ == "__main__":
    main()

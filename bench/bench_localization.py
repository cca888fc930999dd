"""Benchmark: fast threshold sweep vs the per-threshold reference, on the same maps.

Both paths evaluate MaxBoxAcc (V1, largest contour) and MaxBoxAccV2 (all contours) at IoU
30/50/70 over 1000 thresholds per map, on random smooth 224x224 maps, and the script asserts that
their per-threshold counts are identical. It prints the throughput (maps/s) of the reference, of
the fast path in one process and on a process pool (started before the timings), and the ratios.

    python bench/bench_localization.py [--maps 40] [--families cam bumps noise] [--gt map random]
        [--workers 2] [--seed 0] [--no-jit-check]

The fast path's compiled kernel (numba) is loaded, or compiled, on its first call in a process:
that time is kept out of the throughputs and printed on its own, both the first call in this
process (numba import plus loading the cached machine code) and, unless ``--no-jit-check``, the
first call in a fresh interpreter with an empty numba cache (the compile time proper).

``--gt map`` uses a box around the map's main blob (pixels above half the maximum), as a trained
CAM would roughly give; ``--gt random`` draws 1-3 random boxes. Timings depend on the machine's
load (``/proc/loadavg`` is printed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from camexp.localization import (
    box_sweep,
    box_sweep_counts,
    cam_thresholds,
    quantize_map,
    reference_box_sweep,
    sweep_pool,
)
from camexp.localization.random_maps import (
    blurred_noise,
    box_around,
    cam_like,
    gaussian_bumps,
    random_boxes,
)

IOUS = (30, 50, 70)
SIZE = 224


def make_maps(family: str, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random smooth ``224 x 224`` maps in ``[0, 1]`` of one family."""
    makers: dict[str, Callable[[], np.ndarray]] = {
        "cam": lambda: cam_like(rng, SIZE),
        "bumps": lambda: gaussian_bumps(rng, SIZE, int(rng.integers(1, 5))),
        "noise": lambda: blurred_noise(rng, SIZE, rng.uniform(6, 25)),
    }
    return [makers[family]() for _ in range(count)]


def reference_counts(
    items: list[tuple[np.ndarray, np.ndarray]], taus: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    multi = np.zeros((len(IOUS), len(taus)), dtype=np.int64)
    largest = np.zeros_like(multi)
    for quantized, gt in items:
        sweep = reference_box_sweep(quantized, gt, taus, IOUS)
        multi += sweep.multi
        largest += sweep.largest
    return multi, largest


def _first_call() -> float:
    """Seconds of the first ``box_sweep`` call in this process (loads or compiles the kernel)."""
    start = time.perf_counter()
    box_sweep(np.zeros((8, 8), dtype=np.uint8), np.array([[0, 0, 3, 3]]), cam_thresholds(), IOUS)
    return time.perf_counter() - start


def _warm_up(seconds: float) -> float:
    """Runs in a worker: load the compiled kernel (first call), then wait so that every worker
    gets one of these tasks."""
    first = _first_call()
    time.sleep(seconds)
    return first


def jit_compile_seconds() -> float | None:
    """First ``box_sweep`` call in a fresh interpreter with an empty numba cache (compile time)."""
    code = "import bench_localization as b; print(b._first_call())"
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")]
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, or "n/a"."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def timed(func: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = func()
    return out, time.perf_counter() - start


def bench_family(family: str, gt_kind: str, count: int, pool: Executor, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    maps = make_maps(family, count, rng)
    gts = [box_around(m) if gt_kind == "map" else random_boxes(rng, SIZE) for m in maps]
    items = [(quantize_map(m), g) for m, g in zip(maps, gts, strict=True)]
    taus = cam_thresholds(0.001)

    (ref_multi, ref_largest), t_ref = timed(lambda: reference_counts(items, taus))
    (fast_multi, fast_largest, n1), t_fast = timed(
        lambda: box_sweep_counts(items, taus, IOUS, workers=1)
    )
    (pool_multi, pool_largest, n2), t_pool = timed(
        lambda: box_sweep_counts(items, taus, IOUS, pool=pool)
    )
    assert n1 == n2 == count
    for name, a, b in (
        ("V2 fast", fast_multi, ref_multi),
        ("V1 fast", fast_largest, ref_largest),
        ("V2 pool", pool_multi, ref_multi),
        ("V1 pool", pool_largest, ref_largest),
    ):
        assert np.array_equal(a, b), f"{family}/{gt_kind}: {name} counts differ from the reference"
    return {
        "family": family,
        "gt": gt_kind,
        "maps": count,
        "ref": count / t_ref,
        "fast": count / t_fast,
        "pool": count / t_pool,
        "ratio_fast": t_ref / t_fast,
        "ratio_pool": t_ref / t_pool,
        "acc_v2": (ref_multi.max(axis=1) * 100.0 / count).round(1).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=40, help="maps per family")
    parser.add_argument("--families", nargs="+", default=["cam", "bumps", "noise"])
    parser.add_argument("--gt", nargs="+", default=["map", "random"], choices=["map", "random"])
    parser.add_argument("--workers", type=int, default=2, help="processes of the pooled fast run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-jit-check",
        dest="jit_check",
        action="store_false",
        help="skip measuring the kernel's compile time in a fresh interpreter (a few seconds)",
    )
    args = parser.parse_args()

    print(f"cpus={os.cpu_count()} loadavg={loadavg()}")
    print(f"{len(cam_thresholds())} thresholds, IoU {IOUS}, {SIZE}x{SIZE} maps, V1 + V2 counts")
    print(f"fast path: {fast_path_kind()}")
    if args.jit_check:
        compiled = jit_compile_seconds()
        shown = "n/a" if compiled is None else f"{compiled:.2f} s"
        print(f"first call with an empty numba cache (JIT compile, not in the timings): {shown}")
    print(f"first call in this process (kernel load, not in the timings): {_first_call():.2f} s")
    header = (
        f"{'family':<7}{'gt':<8}{'maps':>5}{'ref maps/s':>12}{'fast maps/s':>13}"
        f"{'pool maps/s':>13}{'fast/ref':>10}{'pool/ref':>10}  MaxBoxAccV2@30/50/70"
    )
    rows = []
    with sweep_pool(args.workers) as pool:
        # start the worker processes (spawn + imports) outside the timings: one sleeping task
        # per worker, so that every worker is up before the first timed run
        firsts, t_start = timed(lambda: list(pool.map(_warm_up, [0.3] * args.workers)))
        print(
            f"process pool of {args.workers} started in {t_start:.2f} s, kernel loaded in "
            f"{max(firsts):.2f} s (not in the timings)"
        )
        print(header)
        for family in args.families:
            for gt_kind in args.gt:
                rows.append(bench_family(family, gt_kind, args.maps, pool, args.seed))
                print_row(rows[-1])
    summarize(rows, args.workers)


def fast_path_kind() -> str:
    """Which implementation :func:`box_sweep` uses here."""
    from camexp.localization.fast import _kernel

    if _kernel() is None:
        return "OpenCV tracing of the distinct masks (numba not installed)"
    import numba

    return f"compiled union-find sweep (numba {numba.__version__})"


def print_row(row: dict) -> None:
    print(
        f"{row['family']:<7}{row['gt']:<8}{row['maps']:>5}{row['ref']:>12.1f}"
        f"{row['fast']:>13.1f}{row['pool']:>13.1f}{row['ratio_fast']:>9.1f}x"
        f"{row['ratio_pool']:>9.1f}x  {row['acc_v2']}",
        flush=True,
    )


def summarize(rows: list[dict], workers: int) -> None:
    total = sum(r["maps"] for r in rows)
    t_ref = sum(r["maps"] / r["ref"] for r in rows)
    t_fast = sum(r["maps"] / r["fast"] for r in rows)
    t_pool = sum(r["maps"] / r["pool"] for r in rows)
    print(
        f"all: {total} maps, counts identical; reference {total / t_ref:.1f} maps/s, fast "
        f"{total / t_fast:.1f} maps/s ({t_ref / t_fast:.1f}x), fast on {workers} processes "
        f"{total / t_pool:.1f} maps/s ({t_ref / t_pool:.1f}x)"
    )
    print(f"loadavg after: {loadavg()}")


if __name__ == "__main__":
    main()

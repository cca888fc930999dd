"""``python -m camexp.data.synthetic --out DIR``: write the synthetic dataset's CUB layout."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from camexp.data.synthetic.spec import SyntheticSpec
from camexp.data.synthetic.writing import write_synthetic_cub

# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Write a copy of the synthetic dataset to ``--out/CUB_200_2011``."""
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(
        prog="python -m camexp.data.synthetic",
        description="Write the seeded synthetic WSOL dataset in the CUB-200-2011 layout.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to hold CUB_200_2011/")
    for field in dataclasses.fields(SyntheticSpec):
        default = getattr(defaults, field.name)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=f"(default: {default})",
        )
    args = parser.parse_args(argv)
    try:
        spec = SyntheticSpec(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticSpec)}
        )
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    try:
        cub = write_synthetic_cub(args.out, spec)
    except FileExistsError as err:
        parser.error(str(err))
    print(f"wrote {spec.num_images} images to {cub} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

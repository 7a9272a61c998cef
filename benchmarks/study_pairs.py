"""Paired PSNR differences between any two arms of a finished study (per test slice, averaged
over seeds, 95% Student-t interval), e.g. GLEAM against checkpointing at equal depth.

    python benchmarks/study_pairs.py runs/study-2d/study.json greedy checkpoint
"""

from __future__ import annotations

import argparse
import json

from gleam_mri.study.report import per_slice_psnr
from gleam_mri.study.stats import paired_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="study.json written by gleam study")
    parser.add_argument("a", help="arm a (the difference is a - b)")
    parser.add_argument("b", help="arm b")
    args = parser.parse_args()
    arms = json.load(open(args.study))["arms"]
    a, b = per_slice_psnr(arms[args.a]), per_slice_psnr(arms[args.b])
    keys = sorted(set(a) & set(b))
    print(f"PSNR {args.a} - {args.b} over {len(keys)} test slices: ", end="")
    print(paired_difference([a[k] for k in keys], [b[k] for k in keys]))


if __name__ == "__main__":
    main()

"""Benchmark training strategies (the same code as ``gleam bench``).

Usage from the repository root, installed or not::

    PYTHONPATH=src python3 benchmarks/bench.py --preset 2d-knee --depths 4 8 16 32 --out runs/bench

Per strategy and depth: median step time, memory and achieved conv TFLOP/s, against the floors
measured in the same run (copy bandwidth, conv throughput at the model's shapes, CNN-only step).
``--help`` lists every option; ``docs/bench.md`` explains the columns.
"""

from __future__ import annotations

import sys

from gleam_mri.bench.command import main

if __name__ == "__main__":
    sys.exit(main())

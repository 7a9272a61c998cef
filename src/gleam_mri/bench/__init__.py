"""Benchmarks of training strategies: step time, memory, conv TFLOP/s and the floors they face.

``gleam bench`` (:mod:`gleam_mri.bench.command`) runs :func:`run_benchmark` on a workload preset
(:mod:`gleam_mri.bench.shapes`) and writes JSON, markdown and a figure
(:mod:`gleam_mri.bench.output`). See ``docs/bench.md``.
"""

from __future__ import annotations

from gleam_mri.bench.flops import ConvFlopCounter, conv_flops
from gleam_mri.bench.harness import run_benchmark
from gleam_mri.bench.options import BenchOptions
from gleam_mri.bench.output import markdown_report, plot_figure, write_json, write_outputs
from gleam_mri.bench.shapes import PRESETS, BenchShape, get_preset, make_batch

__all__ = [
    "PRESETS",
    "BenchOptions",
    "BenchShape",
    "ConvFlopCounter",
    "conv_flops",
    "get_preset",
    "make_batch",
    "markdown_report",
    "plot_figure",
    "run_benchmark",
    "write_json",
    "write_outputs",
]

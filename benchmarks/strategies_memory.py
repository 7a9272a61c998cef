"""Saved-activation bytes and step time of each training strategy as depth grows (CPU or GPU).

Usage (from the repository root)::

    python benchmarks/strategies_memory.py --depths 4 8 16 --out strategies.json

For each strategy and depth, one training step of PGD-ResNet on a random 2D batch is measured:
the peak bytes of tensors saved for backward that are alive at once (``SavedTensorMeter``; on CUDA
also ``torch.cuda.max_memory_allocated``) and the median wall time of a step (after one warm-up
step). Ratios between strategies are meaningful only within one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from gleam_mri.config import ModelConfig
from gleam_mri.data.batch import MRIBatch
from gleam_mri.fft import fftnc
from gleam_mri.meters import SavedTensorMeter
from gleam_mri.models.builders import build_model
from gleam_mri.physics.coils import birdcage_maps
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy

STRATEGIES = ("e2e", "checkpoint", "invertible", "greedy")


def make_batch(size: int, coils: int, batch: int, device: torch.device) -> MRIBatch:
    """A random 2D batch at 4x (every 4th line plus 8 centre lines) with birdcage maps."""
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch, size, size, dtype=torch.complex64, generator=g)
    maps = birdcage_maps(coils, (size, size)).expand(batch, -1, -1, -1).contiguous()
    mask = torch.zeros(batch, 1, 1, size)
    mask[..., ::4] = 1
    mask[..., size // 2 - 4 : size // 2 + 4] = 1
    kspace = mask * fftnc(maps * image[:, None], 2)
    return MRIBatch(
        kspace=kspace,
        mask=mask,
        maps=maps,
        target=image.abs(),
        scale=torch.ones(batch),
        fft_ndim=2,
    ).to(device)


def measure(strategy: str, depth: int, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(
        name="pgd",
        unrolls=depth,
        features=args.features,
        blocks=args.blocks,
        invertible=strategy == "invertible",
    )
    net = build_model(cfg, "2d").to(device)
    s = build_strategy(strategy, net, build_loss("l1"))
    batch = make_batch(args.size, args.coils, args.batch, device)
    s.train_step(batch)  # warm-up
    with SavedTensorMeter() as meter:
        s.forward_backward(batch)
    s.zero_grad()
    times, cuda_peak = [], None
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        s.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
            cuda_peak = torch.cuda.max_memory_allocated()
        times.append(time.perf_counter() - start)
    return {
        "strategy": strategy,
        "depth": depth,
        "saved_bytes": meter.peak_bytes,
        "cuda_peak_bytes": cuda_peak,
        "step_s": statistics.median(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [measure(s, d, args, device) for d in args.depths for s in STRATEGIES]
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    print("| strategy | depth | saved activations (MiB) | step (s) | step / e2e step |")
    print("|---|---|---|---|---|")
    for row in rows:
        e2e = next(r for r in rows if r["strategy"] == "e2e" and r["depth"] == row["depth"])
        print(
            f"| {row['strategy']} | {row['depth']} | {row['saved_bytes'] / 2**20:.2f} | "
            f"{row['step_s']:.3f} | {row['step_s'] / e2e['step_s']:.2f} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}))


if __name__ == "__main__":
    main()

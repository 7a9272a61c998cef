"""Throughput of pipelined GLEAM: 1 stage vs K stages (one process each), and a K-stage model.

Usage (from the repository root; one thread per process, so K stages need K free cores)::

    PYTHONPATH=src python3 benchmarks/pipeline_throughput.py --stages 1 2 --trials 3 --out p.json

For each K, K processes (gloo, CPU; rank r pinned to the r-th core unless ``--no-pin``) train
PGD-ResNet under :class:`PipelineGreedy` with balanced modules (``unrolls`` iterations split into
``K`` equal stages) on a synthetic 2D data set written to a temporary folder, with real HDF5
batches (``StepBatches``: file read, mask draw, normalisation on every rank). Measured, after
warm-up steps:

- ``samples_per_s``: ``steps x batch / wall time`` of the timed steps (the slowest rank's clock,
  between two barriers), and ``efficiency = samples_per_s(K) / (K x samples_per_s(1))`` per
  trial; trials interleave the stage counts and the medians are reported with their range.
- ``stage_s``: each stage's compute time per step alone (forward, backward, optimizer step on its
  modules, no communication), ``link_s``: one state transfer between neighbours (half a
  ping-pong), ``load_s``: building a batch locally (what every rank does), ``context_s``: sending
  the batch's k-space, maps, mask and target instead (half a ping-pong) - the "send the context
  or load it by index" question.
- ``model_samples_per_s``: the steady-state model ``batch / max_s(stage_s + load_s + link_s)``
  scaled by the pipeline fill ``steps / (steps + K - 1)``; compare it with the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gleam_mri.config import ModelConfig
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.models.builders import build_model
from gleam_mri.models.unrolled import Problem
from gleam_mri.training.batches import StepBatches
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies.pipeline import PipelineGreedy

MASK = {"name": "random", "accelerations": [4], "center_fractions": [0.08]}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping_pong(tensors: list[torch.Tensor], rank: int, repeats: int) -> float:
    """Half the median round trip of ``tensors`` between ranks 0 and 1 (seconds)."""
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        for t in tensors:
            if rank == 0:
                dist.send(t, 1)
                dist.recv(t, 1)
            elif rank == 1:
                dist.recv(t, 0)
                dist.send(t, 0)
        times.append((time.perf_counter() - start) / 2)
    return statistics.median(times)


def _stage_alone(stage: PipelineGreedy, batches: StepBatches, repeats: int) -> float:
    """Median compute time of this stage's modules on one batch (no communication)."""
    net = stage.net
    times = []
    for t in range(repeats):
        batch = batches[t]
        with torch.no_grad():  # the input this stage would receive
            problem = Problem.from_batch(batch)
            state = net.init_state(net.prepare(problem))
            for module in net.split(stage.n_modules)[: stage.module_ids[0]]:
                state = module(state, problem)
        start = time.perf_counter()
        stage.zero_grad()
        if stage.is_first:
            problem, state = stage.start(batch)
        stage.train_modules(state, problem, batch)
        stage.optim.step(stage.active_groups())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _train(stage: PipelineGreedy, batches: StepBatches, steps: int) -> None:
    """``steps`` training steps of this stage from its current step, then drain its links."""
    for _ in range(steps):
        stage.train_step(batches[stage.step])
    stage.finish()


def worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(1)
    if args.pin and hasattr(os, "sched_setaffinity"):  # one dedicated core per stage
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[rank % os.cpu_count()]})
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=300))
    dataset = open_dataset(Path(args.data) / "train", MASK)
    batches = StepBatches(dataset, args.batch, seed=0)
    torch.manual_seed(0)
    cfg = ModelConfig(name="pgd", unrolls=args.unrolls, features=args.features, blocks=args.blocks)
    net = build_model(cfg, "2d")
    stage = PipelineGreedy(
        net, build_loss("l1"), modules=args.unrolls, staleness=args.staleness, timeout=300
    )
    _train(stage, batches, args.warmup)
    dist.barrier()
    start = time.perf_counter()
    _train(stage, batches, args.steps)
    dist.barrier()
    wall = time.perf_counter() - start
    result = {"rank": rank, "wall_s": wall, "modules": stage.module_ids}
    result["stage_s"] = _stage_alone(stage, batches, args.repeats)
    loads = []
    for t in range(args.repeats):
        begin = time.perf_counter()
        batch = batches[1000 + t]
        loads.append(time.perf_counter() - begin)
    result["load_s"] = statistics.median(loads)
    if world > 1:
        image = torch.view_as_real(batch.maps[:, 0].contiguous()).contiguous()
        context = [torch.view_as_real(batch.kspace).contiguous()]
        context += [torch.view_as_real(batch.maps).contiguous(), batch.mask.contiguous()]
        context += [batch.target.contiguous()]
        result["link_s"] = _ping_pong([image], rank, args.repeats)
        result["context_s"] = _ping_pong(context, rank, args.repeats)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def run(stages: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            worker, args=(stages, _free_port(), args, out), nprocs=stages, start_method="spawn"
        )
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(stages)]
    wall = max(r["wall_s"] for r in ranks)
    link = statistics.median([r["link_s"] for r in ranks]) if stages > 1 else 0.0
    load = max(r["load_s"] for r in ranks)
    period = max(r["stage_s"] for r in ranks) + load + link
    fill = args.steps / (args.steps + stages - 1)
    return {
        "stages": stages,
        "samples_per_s": args.steps * args.batch / wall,
        "model_samples_per_s": args.batch / period * fill,
        "stage_s": [r["stage_s"] for r in ranks],
        "load_s": load,
        "link_s": link,
        "context_s": statistics.median([r["context_s"] for r in ranks]) if stages > 1 else None,
        "modules": [r["modules"] for r in ranks],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--unrolls", type=int, default=4, help="iterations (= modules)")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--size", type=int, default=96, help="image size (square)")
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--staleness", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the component timings")
    parser.add_argument("--trials", type=int, default=3, help="interleaved repetitions")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pin rank r to the r-th available core (default: on)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    if any(args.unrolls % s for s in args.stages):
        sys.exit("--unrolls must be a multiple of every --stages value (balanced stages)")
    with tempfile.TemporaryDirectory() as data:
        spec = SyntheticSpec(
            n_volumes=4, slices_per_volume=4, shape=(args.size, args.size), n_coils=args.coils
        )
        write_synthetic_dataset(data, spec, progress=False)
        args.data = data
        # trials interleave the stage counts, so slow phases of a shared machine hit all of them
        trials = [[run(k, args) for k in args.stages] for _ in range(args.trials)]
    print(f"cpu threads per process: 1; cores available: {os.cpu_count()}; trials: {args.trials}")
    print(
        "| stages | samples/s (median, min-max) | efficiency (median, min-max) | "
        "model samples/s | stage compute (s) | load (s) | state link (s) | context link (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = [_summarize(i, k, trials, args.stages) for i, k in enumerate(args.stages)]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": summary}
        payload["trials"] = trials
        args.out.write_text(json.dumps(payload, indent=2))


def _summarize(i: int, k: int, trials: list[list[dict]], stages: list[int]) -> dict:
    """Medians over trials of the ``i``-th stage count ``k``; prints its markdown row."""
    median = statistics.median
    rows = [trial[i] for trial in trials]
    speeds = [r["samples_per_s"] for r in rows]
    effs = []
    if 1 in stages:
        base = [trial[stages.index(1)]["samples_per_s"] for trial in trials]
        effs = [v / (k * b) for v, b in zip(speeds, base, strict=True)]
    row = {
        "stages": k,
        "samples_per_s": median(speeds),
        "samples_per_s_trials": speeds,
        "efficiency": median(effs) if effs else None,
        "efficiency_trials": effs,
        "model_samples_per_s": median(r["model_samples_per_s"] for r in rows),
        "stage_s": [median(r["stage_s"][s] for r in rows) for s in range(k)],
        "load_s": median(r["load_s"] for r in rows),
        "link_s": median(r["link_s"] for r in rows),
        "context_s": None if k == 1 else median(r["context_s"] for r in rows),
        "modules": rows[0]["modules"],
    }
    eff = "-" if not effs else f"{row['efficiency']:.2f} ({min(effs):.2f}-{max(effs):.2f})"
    ctx = "-" if row["context_s"] is None else f"{row['context_s'] * 1e3:.2f} ms"
    print(
        f"| {k} | {row['samples_per_s']:.2f} ({min(speeds):.2f}-{max(speeds):.2f}) | {eff} | "
        f"{row['model_samples_per_s']:.2f} | "
        f"{', '.join(f'{v:.3f}' for v in row['stage_s'])} | {row['load_s'] * 1e3:.1f} ms | "
        f"{row['link_s'] * 1e3:.2f} ms | {ctx} |"
    )
    return row


if __name__ == "__main__":
    main()

"""The benchmark harness: every strategy at every depth, the floors, the fastMRI baseline.

:func:`run_benchmark` returns one plain dict (JSON-ready)::

    {"schema", "meta" (device, versions), "preset", "model", "options",
     "floors": {"copy": {...}, "conv": [per distinct convolution], "cnn": [per depth]},
     "records": [per strategy and depth, then the fastMRI baseline], "skipped": [reasons]}

Each record measures one training step (see :mod:`gleam_mri.bench.measure`): ``step_s``
(median), ``memory_bytes`` (CUDA: ``max_memory_allocated``; CPU: saved-activation bytes),
``useful_conv_flops`` (3 x one forward's convolution FLOPs, :mod:`gleam_mri.bench.flops`),
``conv_tflops`` (useful FLOPs / step time), ``floor_ratio`` (step time / CNN-only floor step
time at the same depth) and ``recompute_factor`` (forward FLOPs executed in a step / one
forward's). A configuration that runs out of memory gives ``status: "oom"``.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

import gleam_mri
import gleam_mri.bench.fastmri_baseline as fmb
from gleam_mri.bench.floors import (
    CnnFloor,
    cnn_roots,
    conv_throughput,
    conv_time,
    copy_bandwidth,
    record_cnn_calls,
)
from gleam_mri.bench.flops import TRAIN_FACTOR, ConvCall
from gleam_mri.bench.measure import (
    count_forward,
    device_name,
    free_memory,
    instrumented_call,
    is_out_of_memory,
    time_calls,
)
from gleam_mri.bench.options import (
    BenchOptions,
    adam_kwargs,
    apply_channels_last,
    compile_modules,
    resolve_fused_adam,
    strategy_config,
)
from gleam_mri.bench.shapes import BenchShape, get_preset, make_batch, model_config
from gleam_mri.config import ModelConfig
from gleam_mri.data.batch import MRIBatch
from gleam_mri.devices import bf16_autocast, resolve_device
from gleam_mri.models.builders import build_model
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.schema import plain
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy

SCHEMA = "gleam-bench/1"
Log = Callable[[str], None]


# ----------------------------------------------------------------------------- building


def _meta(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32) if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "gleam_mri": gleam_mri.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def build_net(
    cfg: ModelConfig,
    shape: BenchShape,
    depth: int,
    invertible: bool,
    device: torch.device,
    channels_last: bool = False,
) -> UnrolledNet:
    """The model at ``depth`` (seeded), on ``device``, with channels-last weights if asked."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(cfg, unrolls=depth, invertible=invertible)
    net = build_model(cfg, shape.kind).to(device)
    if channels_last:
        apply_channels_last(net)
    return net


def _bench_device(name: str) -> torch.device:
    """:func:`~gleam_mri.devices.resolve_device`, limited to the devices measured (cpu, cuda).

    Every bad name raises ``ValueError`` (the command line reports it as a usage error).
    """
    try:
        device = resolve_device(name)
    except RuntimeError as err:  # a name torch.device cannot parse
        raise ValueError(f"bad device {name!r}: {err}") from err
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: the benchmark supports cpu and cuda")
    return device


# ----------------------------------------------------------------------------- measuring


def measure_training(
    step: Callable[[], Any],
    forward: Callable[[], Any],
    modules: Sequence[nn.Module],
    cnns: Sequence[nn.Module],
    device: torch.device,
    options: BenchOptions,
) -> dict[str, Any]:
    """Count, instrument, (compile), then time ``step``: the measurement fields of a record.

    ``forward`` runs one forward pass of the network (counted for the useful FLOPs), ``modules``
    hold every convolution to count, ``cnns`` are compiled when ``options.compile``.
    """
    forward_flops = count_forward(forward, modules).forward_flops
    counts = instrumented_call(step, modules)  # also the first warm-up step
    warmup = options.warmup
    if options.compile:
        compile_modules(cnns)
        warmup = max(warmup, 1)  # compilation happens in the first call: never time it
    timing = time_calls(step, device, warmup=warmup, repeats=options.repeats)
    useful = TRAIN_FACTOR * forward_flops
    executed = counts["executed_forward_conv_flops"]
    cuda = device.type == "cuda"
    return {
        "status": "ok",
        "step_s": timing["time_s"],
        "step_times_s": timing["times_s"],
        "warmup_s": timing["warmup_s"],
        "memory_bytes": timing["peak_bytes"] if cuda else counts["saved_bytes"],
        "memory_kind": "cuda_max_allocated" if cuda else "saved_activations",
        "peak_bytes": timing["peak_bytes"],
        "peak_step_bytes": timing["peak_step_bytes"],
        "saved_bytes": counts["saved_bytes"],
        "params": sum(p.numel() for m in modules for p in m.parameters()),
        "forward_conv_flops": forward_flops,
        "useful_conv_flops": useful,
        "executed_forward_conv_flops": executed,
        "recompute_factor": executed / forward_flops if forward_flops else None,
        "conv_tflops": useful / timing["time_s"] / 1e12,
    }


def _guarded(measure: Callable[[], dict[str, Any]], device: torch.device) -> dict[str, Any]:
    """``measure()``, or ``{"status": "oom", "error": ...}`` when it runs out of memory."""
    try:
        result = measure()
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        result = {"status": "oom", "error": str(err).splitlines()[0][:300]}
    free_memory(device)
    return result


def measure_strategy(
    name: str,
    cfg: ModelConfig,
    shape: BenchShape,
    batch: MRIBatch,
    depth: int,
    device: torch.device,
    options: BenchOptions,
) -> dict[str, Any]:
    """One record: strategy ``name`` of gleam-mri's model at ``depth`` (the network it trains:
    ``Options.network``, e.g. the coupled one for exact invertible training)."""
    run_cfg, settings = strategy_config(name, options, dataclasses.replace(cfg, unrolls=depth))
    extra = settings.strategy_kwargs(run_cfg)

    def measure() -> dict[str, Any]:
        invertible = run_cfg.model.invertible
        net = build_net(cfg, shape, depth, invertible, device, options.channels_last)
        fused = resolve_fused_adam(options.fused_adam, device)
        strategy = build_strategy(
            name,
            net,
            build_loss(options.loss),
            lr=options.lr,
            amp=options.amp,
            optimizer_kwargs=adam_kwargs(fused),
            **extra,
        )
        return measure_training(
            lambda: strategy.train_step(batch),
            lambda: strategy.reconstruct(batch),
            [net],
            cnn_roots(net),
            device,
            options,
        )

    head = {"source": "gleam", "model": cfg.name, "strategy": name, "depth": depth}
    return {**head, "strategy_options": plain(settings), **_guarded(measure, device)}


def measure_fastmri(
    variant: str,
    cfg: ModelConfig,
    batch: MRIBatch,
    depth: int,
    device: torch.device,
    options: BenchOptions,
) -> dict[str, Any]:
    """One record of the fastMRI baseline (``fastmri-e2e`` or ``fastmri-checkpoint``)."""

    def measure() -> dict[str, Any]:
        torch.manual_seed(0)
        model = fmb.build_fastmri_varnet(cfg, depth, variant == "fastmri-checkpoint").to(device)
        if options.channels_last:
            apply_channels_last(model)
        fused = resolve_fused_adam(options.fused_adam, device)
        runner = fmb.FastMRIVarNetStep(
            model, batch, amp=options.amp, lr=options.lr, optimizer_kwargs=adam_kwargs(fused)
        )
        return measure_training(
            runner.step, runner.forward, [model], fmb.cnn_modules(model), device, options
        )

    head = {"source": "fastmri", "model": "fastmri-varnet", "strategy": variant, "depth": depth}
    return {**head, "strategy_options": {}, **_guarded(measure, device)}


def measure_floor(
    cfg: ModelConfig,
    shape: BenchShape,
    batch: MRIBatch,
    depth: int,
    device: torch.device,
    options: BenchOptions,
) -> tuple[dict[str, Any], dict[ConvCall, int]]:
    """The CNN-only floor at ``depth``, and the convolution calls of one forward of its CNNs."""
    calls: dict[ConvCall, int] = {}

    def measure() -> dict[str, Any]:
        net = build_net(cfg, shape, depth, False, device, options.channels_last)
        roots = cnn_roots(net)

        def forward() -> None:
            with bf16_autocast(device, options.amp):
                net(Problem.from_batch(batch))

        fused = resolve_fused_adam(options.fused_adam, device)
        floor = CnnFloor(
            record_cnn_calls(forward, roots),
            device,
            amp=options.amp,
            lr=options.lr,
            optimizer_kwargs=adam_kwargs(fused),
        )
        calls.update(count_forward(floor.forward, floor.modules).calls)
        result = measure_training(
            floor.step, floor.forward, floor.modules, floor.modules, device, options
        )
        return {**result, "cnn_calls": len(floor.calls)}

    return {"depth": depth, **_guarded(measure, device)}, calls


# ----------------------------------------------------------------------------- the run


def run_benchmark(
    preset: BenchShape | str,
    options: BenchOptions | None = None,
    model: ModelConfig | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Measure every strategy at every depth, the floors and (optionally) the fastMRI baseline.

    ``model`` replaces the preset's default model (its ``unrolls`` and ``invertible`` are set
    per record). ``log`` receives one progress line per measurement.
    """
    options = options or BenchOptions()
    options.validate()
    shape = get_preset(preset) if isinstance(preset, str) else preset
    cfg = model_config(shape, model)
    device = _bench_device(options.device)
    say = log or (lambda _line: None)
    fastmri_skip = None
    if options.fastmri:
        if cfg.name != "varnet" or shape.kind != "2d":
            raise ValueError(
                "the fastMRI baseline compares E2E-VarNets on 2D data: use a 2D preset with "
                f"model varnet (e.g. varnet-knee), not {shape.name} with model {cfg.name}"
            )
        fastmri_skip = fmb.fastmri_unavailable()
    build_net(cfg, shape, min(options.depths), False, torch.device("cpu"))  # fail early
    cudnn_benchmark = options.cudnn_benchmark and device.type == "cuda"
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "meta": _meta(device),
        "preset": shape.as_dict(),
        "model": dataclasses.asdict(cfg),
        "options": {
            **dataclasses.asdict(options),
            "fused_adam": resolve_fused_adam(options.fused_adam, device),
            "cudnn_benchmark": cudnn_benchmark,
            "device": str(device),
        },
        "floors": {"copy": None, "conv": [], "cnn": []},
        "records": [],
        "skipped": [] if fastmri_skip is None else [fastmri_skip],
    }
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        batch = make_batch(shape, options.batch, device)
        floors = _measure_floors(result["floors"], cfg, shape, batch, device, options, say)
        records = result["records"]
        for depth in options.depths:
            for name in options.strategies:
                record = measure_strategy(name, cfg, shape, batch, depth, device, options)
                records.append(_with_floor(record, floors.get(depth)))
                say(_line(name, depth, record))
        if fastmri_skip is not None:
            say(fastmri_skip)
        elif options.fastmri:
            for depth in options.depths:
                for variant in fmb.VARIANTS:
                    record = measure_fastmri(variant, cfg, batch, depth, device, options)
                    records.append(_with_floor(record, floors.get(depth)))
                    say(_line(variant, depth, record))
    finally:
        torch.backends.cudnn.benchmark = previous
    return result


def _measure_floors(
    out: dict[str, Any],
    cfg: ModelConfig,
    shape: BenchShape,
    batch: MRIBatch,
    device: torch.device,
    options: BenchOptions,
    say: Log,
) -> dict[int, dict[str, Any]]:
    """Fill ``out`` (copy, conv, cnn) and return the CNN-only floor record of each depth."""
    if not options.floors:
        return {}
    nbytes = options.copy_bytes or (2**30 if device.type == "cuda" else 64 * 2**20)
    out["copy"] = copy_bandwidth(device, nbytes, warmup=options.warmup, repeats=options.repeats)
    say(f"copy bandwidth: {out['copy']['gb_per_s']:.1f} GB/s")
    throughput: dict[ConvCall, dict[str, Any]] = {}
    by_depth: dict[int, dict[str, Any]] = {}
    for depth in options.depths:
        floor, calls = measure_floor(cfg, shape, batch, depth, device, options)
        if not throughput and calls:  # the same convolutions at every depth: measure once
            throughput = conv_throughput(
                calls, device, warmup=options.warmup, repeats=options.repeats
            )
            out["conv"] = [{**row, "count_per_forward": calls[c]} for c, row in throughput.items()]
        timing = conv_time(calls, throughput) if calls else {"time_s": None, "tflops": None}
        floor.update(conv_only_s=timing["time_s"], conv_only_tflops=timing["tflops"])
        by_depth[depth] = floor
        out["cnn"].append(floor)
        say(_line("cnn-floor", depth, floor))
    return by_depth


def _with_floor(record: dict[str, Any], floor: dict[str, Any] | None) -> dict[str, Any]:
    ok = floor is not None and floor.get("status") == "ok" and record.get("status") == "ok"
    record["floor_step_s"] = floor["step_s"] if ok else None
    record["floor_ratio"] = record["step_s"] / floor["step_s"] if ok else None
    return record


def _line(name: str, depth: int, record: dict[str, Any]) -> str:
    if record.get("status") != "ok":
        return f"{name:>20} depth {depth:>3}: {record.get('status')}"
    ratio = record.get("floor_ratio")
    tail = f", {ratio:.2f}x floor" if ratio is not None else ""
    return (
        f"{name:>20} depth {depth:>3}: {1e3 * record['step_s']:9.2f} ms, "
        f"{record['memory_bytes'] / 2**20:9.1f} MiB, {record['conv_tflops']:.3f} TFLOP/s{tail}"
    )

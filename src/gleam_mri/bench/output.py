"""Benchmark outputs: the JSON result, a markdown report and a figure (memory and time vs depth).

:func:`write_outputs` writes ``bench.json``, ``bench.md`` and ``bench.png`` into a folder. The
markdown's columns are explained in ``docs/bench.md``. The targets table checks the issue's GPU
targets (step time as a multiple of the CNN-only floor, greedy memory growth); on a CPU run the
values are shown for reference only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gleam_mri.training.strategies import STRATEGIES


def floor_targets() -> dict[str, float]:
    """Step time / CNN-only floor that each strategy should reach at every depth on a GPU (the
    issue's targets, declared by the strategies: ``Strategy.costs.floor_target``)."""
    out = {}
    for name, cls in STRATEGIES.items():
        target = cls.costs.floor_target if cls.costs is not None else None
        if target is not None:
            out[name] = target
    return out


GREEDY_MEMORY_TARGET = (8, 32, 1.10)  # memory(32) / memory(8) <= 1.10 for greedy

MIB = 2**20


def write_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """The result as indented JSON (non-finite floats written as ``null``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(result), indent=1) + "\n")
    return path


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _series_key(record: Mapping[str, Any]) -> str:
    return record["strategy"]


def _memory_growth(records: list[Mapping[str, Any]]) -> dict[tuple[str, int], float | None]:
    """memory / memory at the smallest depth measured, per (series, depth)."""
    smallest: dict[str, Mapping[str, Any]] = {}
    for r in sorted(records, key=lambda r: r["depth"]):
        if r.get("status") == "ok":
            smallest.setdefault(_series_key(r), r)
    out: dict[tuple[str, int], float | None] = {}
    for r in records:
        base = smallest.get(_series_key(r))
        ok = r.get("status") == "ok" and base is not None and base["memory_bytes"]
        out[(_series_key(r), r["depth"])] = r["memory_bytes"] / base["memory_bytes"] if ok else None
    return out


def _header(result: Mapping[str, Any]) -> list[str]:
    meta, preset, opts, model = result["meta"], result["preset"], result["options"], result["model"]
    memory = (
        "CUDA `max_memory_allocated` over the timed steps"
        if meta["device"].startswith("cuda")
        else "peak bytes of tensors saved for backward (CPU run)"
    )
    sizes = ", ".join(f"{k}={model[k]}" for k in ("regularizer", "features", "blocks", "levels"))
    return [
        f"# gleam bench: {preset['name']} ({preset['description']})",
        "",
        f"- device: {meta['device_name']} ({meta['device']}), torch {meta['torch']}",
        f"- data: {preset['coils']} coils, D={tuple(preset['image'])}, batch {opts['batch']}",
        f"- model: {model['name']} ({sizes})",
        f"- options: amp={opts['amp']}, channels_last={opts['channels_last']}, "
        f"compile={opts['compile']}, fused_adam={opts['fused_adam']}, "
        f"cudnn_benchmark={opts['cudnn_benchmark']}, "
        f"repeats={opts['repeats']}, warmup={opts['warmup']}",
        f"- memory column: {memory}",
        "",
    ]


def _floor_lines(result: Mapping[str, Any]) -> list[str]:
    floors = result["floors"]
    if not floors.get("copy") and not floors.get("cnn"):
        return []
    lines: list[str] = ["## Floors", ""]
    copy = floors.get("copy")
    if copy:
        lines += [
            f"Copy bandwidth: {copy['gb_per_s']:.1f} GB/s ({copy['bytes'] / MIB:.0f} MiB buffer, "
            "bytes read + written per second).",
            "",
        ]
    if floors.get("cnn"):
        lines += [
            "| depth | CNN-only step (ms) | conv TFLOP/s | memory (MiB) | conv-only time (ms) "
            "| conv-only TFLOP/s | status |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in floors["cnn"]:
            mem = f.get("memory_bytes")
            lines.append(
                f"| {f['depth']} | {_fmt(f.get('step_s'), 1e3)} "
                f"| {_fmt(f.get('conv_tflops'), 1, 3)} | {_fmt(mem, 1 / MIB, 1)} "
                f"| {_fmt(f.get('conv_only_s'), 1e3)} "
                f"| {_fmt(f.get('conv_only_tflops'), 1, 3)} | {f['status']} |"
            )
        lines.append("")
    return lines


def _record_lines(result: Mapping[str, Any]) -> list[str]:
    records = result["records"]
    growth = _memory_growth(records)
    lines = [
        "## Training step per strategy",
        "",
        "| source | strategy | depth | step (ms) | x CNN floor | conv TFLOP/s | memory (MiB) "
        "| memory / smallest depth | recompute | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        ok = r.get("status") == "ok"
        mem = r.get("memory_bytes") if ok else None
        lines.append(
            f"| {r['source']} | {r['strategy']} | {r['depth']} | {_fmt(r.get('step_s'), 1e3)} "
            f"| {_fmt(r.get('floor_ratio'))} | {_fmt(r.get('conv_tflops'), 1, 3)} "
            f"| {_fmt(mem, 1 / MIB, 1)} | {_fmt(growth.get((_series_key(r), r['depth'])))} "
            f"| {_fmt(r.get('recompute_factor'))} | {r['status']} |"
        )
    return [*lines, ""]


def target_checks(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets with the measured values: ``check``, ``target``, ``value``, ``met``."""
    gleam = [r for r in result["records"] if r["source"] == "gleam" and r.get("status") == "ok"]
    checks = []
    for name, limit in floor_targets().items():
        ratios = [r["floor_ratio"] for r in gleam if r["strategy"] == name and r["floor_ratio"]]
        if ratios:
            worst = max(ratios)
            checks.append(
                {
                    "check": f"{name} step / CNN floor (worst depth)",
                    "target": limit,
                    "value": worst,
                    "met": worst <= limit,
                }
            )
    low, high, limit = GREEDY_MEMORY_TARGET
    mem = {r["depth"]: r["memory_bytes"] for r in gleam if r["strategy"] == "greedy"}
    if low in mem and high in mem and mem[low]:
        value = mem[high] / mem[low]
        checks.append(
            {
                "check": f"greedy memory({high}) / memory({low})",
                "target": limit,
                "value": value,
                "met": value <= limit,
            }
        )
    return checks


def _target_lines(result: Mapping[str, Any]) -> list[str]:
    checks = target_checks(result)
    if not checks:
        return []
    cpu = not result["meta"]["device"].startswith("cuda")
    note = " (CPU run: the targets are GPU targets; shown for reference only)" if cpu else ""
    lines = [f"## Targets{note}", "", "| check | target | measured | met |", "|---|---|---|---|"]
    for c in checks:
        met = "yes" if c["met"] else "no"
        lines.append(f"| {c['check']} | <= {c['target']:.2f} | {c['value']:.2f} | {met} |")
    return [*lines, ""]


def _conv_lines(result: Mapping[str, Any]) -> list[str]:
    rows = result["floors"].get("conv") or []
    if not rows:
        return []
    lines = [
        f"## Convolutions at the model's shapes ({rows[0]['dtype']}, "
        f"channels_last={rows[0]['channels_last']})",
        "",
        "| convolution | calls per forward | GFLOP per call | forward TFLOP/s "
        "| forward+backward TFLOP/s | status |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['count_per_forward']} | {row['flops'] / 1e9:.3f} "
            f"| {_fmt(row.get('forward_tflops'), 1, 3)} | {_fmt(row.get('train_tflops'), 1, 3)} "
            f"| {row['status']} |"
        )
    return [*lines, ""]


def markdown_report(result: Mapping[str, Any]) -> str:
    """The whole result as markdown: header, floors, strategies, targets, convolutions."""
    lines = _header(result) + _floor_lines(result) + _record_lines(result)
    lines += _target_lines(result) + _conv_lines(result)
    lines += [f"Skipped: {reason}" for reason in result.get("skipped", [])]
    return "\n".join(lines).rstrip() + "\n"


def plot_figure(result: Mapping[str, Any], path: str | Path) -> Path:
    """Memory vs depth and step time vs depth, one line per strategy (PNG, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_mem, ax_time = fig.subplots(1, 2)
    series: dict[str, list[Mapping[str, Any]]] = {}
    for r in result["records"]:
        if r.get("status") == "ok":
            series.setdefault(_series_key(r), []).append(r)
    for name, rows in series.items():
        rows = sorted(rows, key=lambda r: r["depth"])
        depths = [r["depth"] for r in rows]
        ax_mem.plot(depths, [r["memory_bytes"] / MIB for r in rows], "o-", label=name)
        ax_time.plot(depths, [1e3 * r["step_s"] for r in rows], "o-", label=name)
    floor = [f for f in result["floors"].get("cnn", []) if f.get("status") == "ok"]
    if floor:
        ax_time.plot(
            [f["depth"] for f in floor],
            [1e3 * f["step_s"] for f in floor],
            "k--",
            label="CNN-only floor",
        )
    cuda = result["meta"]["device"].startswith("cuda")
    ax_mem.set_ylabel("peak memory (MiB)" if cuda else "saved activations (MiB)")
    ax_time.set_ylabel("step time (ms)")
    depths = sorted({r["depth"] for r in result["records"]})
    for ax in (ax_mem, ax_time):
        ax.set_xlabel("depth (iterations)")
        if len(depths) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.grid(alpha=0.3)
    ax_time.legend(fontsize=8)
    title = f"{result['preset']['name']} on {result['meta']['device_name']}"
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def write_outputs(result: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out_dir``; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "bench.md"
    markdown.write_text(markdown_report(result))
    return {
        "json": write_json(result, out / "bench.json"),
        "markdown": markdown,
        "figure": plot_figure(result, out / "bench.png"),
    }

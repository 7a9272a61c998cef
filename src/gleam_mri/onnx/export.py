"""``gleam export``: a trained network as one ONNX graph (:mod:`gleam_mri.onnx.graph`).

The network is traced by ``torch.export`` with the image size and coil count dynamic, a few
complex-valued operations that the ONNX exporter does not map are rewritten into equivalent ones
it maps (:func:`_complex_ops_mapped`), and ``torch.onnx.export`` (the dynamo exporter, opset
:data:`OPSET`: FFTs become ``DFT``, complex tensors real ``(..., 2)`` pairs) writes the graph with
the metadata an engine needs (:data:`METADATA`). The file is checked with ``onnx.checker`` and
run with onnxruntime on the example inputs against PyTorch before it replaces anything.
Exported: PGD, MoDL and VarNet in 2D; 3D and cine are refused (their masks and slabs are not
wired into the graph yet).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gleam_mri.atomic import atomic_write
from gleam_mri.inference import load_run
from gleam_mri.onnx.graph import FORMAT, INPUTS, OUTPUTS, ReconstructionGraph

__all__ = ["METADATA", "OPSET", "ExportReport", "as_onnx", "example_inputs", "export_checkpoint"]

OPSET = 20  # the first with DFT's inverse as an input-free attribute of complex pairs
KINDS = ("2d",)  # exported kinds (module docstring)
# metadata_props of the model file (all strings; "config" is the training config as JSON)
METADATA = (
    "gleam_format",
    "kind",
    "model",
    "iterations",
    "fft_ndim",
    "mask_layout",
    "normalisation",
    "maps_input",
    "training_mask",
    "config",
)
TOLERANCE = 1e-4  # onnxruntime against PyTorch, relative to the image's peak


@dataclass
class ExportReport:
    """What was written: the file, its metadata and the check against PyTorch."""

    path: Path
    metadata: dict[str, str]
    max_relative_difference: float  # onnxruntime vs PyTorch on the example inputs


def example_inputs(
    coils: int = 4, height: int = 32, width: int = 24, batch: int = 1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ``(kspace, mask, maps)`` in the graph's layout (2D), centre lines sampled."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(1, 1, 1, width, generator=g) < 0.4).float()
    mask[..., width // 2 - 2 : width // 2 + 2] = 1.0
    kspace = torch.randn(batch, coils, height, width, 2, generator=g) * mask[..., None]
    maps = torch.randn(batch, coils, height, width, 2, generator=g)
    maps = maps / maps.square().sum(dim=(1, -1), keepdim=True).sqrt()  # sum_c |S_c|^2 = 1
    return kspace * 1e-3, mask, maps


def _complex_ops_mapped(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Rewrite complex ``unsqueeze`` into ``stack`` of one tensor, and complex ``zeros_like`` /
    ``full_like`` into ``x * 0 + value``: the same values, in operations the exporter maps."""
    aten = torch.ops.aten
    graph = program.graph_module.graph
    for node in list(graph.nodes):
        first = node.args[0] if node.op == "call_function" and node.args else None
        val = first.meta.get("val") if isinstance(first, torch.fx.Node) else None
        if not (isinstance(val, torch.Tensor) and val.is_complex()):
            continue
        if node.target is aten.unsqueeze.default:
            node.target, node.args = aten.stack.default, ([first], node.args[1])
        elif node.target in (aten.zeros_like.default, aten.full_like.default):
            value = node.args[1] if node.target is aten.full_like.default else 0.0
            with graph.inserting_before(node):
                zero = graph.call_function(aten.mul.Tensor, (first, 0.0))
            zero.meta["val"] = val
            node.target, node.args, node.kwargs = aten.add.Tensor, (zero, value), {}
    program.graph_module.recompile()
    return program


def _trace(graph: ReconstructionGraph, example: tuple) -> torch.export.ExportedProgram:
    auto = torch.export.Dim.AUTO  # dynamic unless the trace pins the size
    image = {0: auto, 1: auto, 2: auto, 3: auto}
    shapes = {"kspace": image, "mask": {3: auto}, "maps": image}
    program = torch.export.export(graph, example, dynamic_shapes=shapes, strict=False)
    return _complex_ops_mapped(program.run_decompositions())


def _metadata(ckpt: dict[str, Any], graph: ReconstructionGraph) -> dict[str, str]:
    config = ckpt["config"]
    model = config["model"]
    return {
        "gleam_format": FORMAT,
        "kind": str(ckpt["kind"]),
        "model": str(model["name"]),
        "iterations": str(len(graph.net)),
        "fft_ndim": str(graph.fft_ndim),
        "mask_layout": "(1, 1, 1, W) 0/1 line mask" + ("" if model["name"] == "varnet" else
                                                        " or (1, 1, H, W)"),
        "normalisation": "inside: max |A^H y| per item; inputs and output at the file's scale",
        "maps_input": "coil maps (B, C, H, W, 2)"
        + (": used for the normalisation only, VarNet estimates its own" if model["name"] ==
           "varnet" else ""),
        "training_mask": json.dumps(config.get("data", {}).get("mask")),
        "config": json.dumps(config),
    }  # fmt: skip


def _check(path: Path, graph: ReconstructionGraph, example: tuple) -> float:
    """``onnx.checker`` on the file, then onnxruntime against PyTorch on ``example``."""
    import onnx
    import onnxruntime

    onnx.checker.check_model(str(path), full_check=True)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only (not its notes on constant folding)
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {name: tensor.numpy() for name, tensor in zip(INPUTS, example, strict=True)}
    (image,) = session.run(list(OUTPUTS), feeds)
    with torch.no_grad():
        expected = graph(*example).numpy()
    return float(np.abs(image - expected).max() / max(np.abs(expected).max(), 1e-30))


def export_checkpoint(
    ckpt_path: str | Path, out: str | Path, optimize: bool = False
) -> ExportReport:
    """Export the network of a training checkpoint (``last.pt``, ``best.pt``, ``adapt.pt``) to
    ``out`` (module docstring). ``optimize``: run onnxscript's graph optimizer too (most of the
    export time for MoDL, whose CG iterations are unrolled; onnxruntime optimises the graph when
    it loads it either way). Raises ``ValueError`` for a kind that is not exported, and
    ``RuntimeError`` when onnxruntime's image differs from PyTorch's by more than
    :data:`TOLERANCE` (``out`` is then left as it was)."""
    run, ckpt = load_run(ckpt_path, device="cpu")
    if run.kind not in KINDS:
        raise ValueError(
            f"{ckpt_path}: a {run.kind} network; gleam export writes {', '.join(KINDS)} networks "
            "(3D slabs and cine frames are not wired into the graph yet)"
        )
    graph = ReconstructionGraph(run.net.eval(), fft_ndim=2)
    example = example_inputs(batch=2)  # 2: the batch size stays dynamic (1 would be pinned)
    # the exporter's notes on its own decompositions and on torchvision's operators
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = _trace(graph, example)
        onnx_program = torch.onnx.export(
            program,
            example,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
            optimize=optimize,
        )
    metadata = _metadata(ckpt, graph)
    model = onnx_program.model_proto
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / out.name
        trial.write_bytes(model.SerializeToString())
        difference = _check(trial, graph, example)
        if not difference <= TOLERANCE:
            raise RuntimeError(
                f"{ckpt_path}: the exported graph's image differs from PyTorch's by "
                f"{difference:.2e} (relative; at most {TOLERANCE:g} allowed); {out} not written"
            )
        with atomic_write(out, "wb") as file:
            file.write(trial.read_bytes())
    return ExportReport(out, metadata, difference)


def as_onnx(source: str | Path, folder: str | Path, name: str = "model") -> Path:
    """``source`` itself when it is a ``.onnx`` file, else its checkpoint exported to
    ``folder/name.onnx`` (:func:`export_checkpoint`)."""
    source = Path(source)
    if source.suffix == ".onnx":
        return source
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return export_checkpoint(source, folder / f"{name}.onnx").path

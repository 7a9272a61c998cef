"""The networks a service offers: ``NAME=CKPT`` parsing and loading, once, at start."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.inference import load_run
from gleam_mri.training.run import Run

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class LoadedModel:
    """A checkpoint's network ready for inference, and what ``GET /v1/models`` says of it."""

    name: str
    path: Path
    run: Run
    # batch -> image with ONNX Runtime (a .onnx model, or --engine onnx); None: PyTorch
    engine: Callable[[MRIBatch], torch.Tensor] | None = None

    def describe(self) -> dict:
        """The ``Model`` JSON object of docs/service.md."""
        cfg = self.run.cfg
        return {
            "name": self.name,
            "kind": self.run.kind,
            "model": cfg.model.name,
            "strategy": cfg.strategy.name,
            "iterations": cfg.model.unrolls,
            "acceleration": mask_acceleration(cfg.data.mask),
            "device": str(self.run.device),
            "engine": "torch" if self.engine is None else "onnx",
        }


def mask_acceleration(mask: dict | None) -> float | None:
    """Acceleration of a mask config (the first of ``accelerations``), ``None`` when unknown."""
    if not isinstance(mask, dict):
        return None
    value = mask.get("acceleration", mask.get("accelerations"))
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def parse_model_specs(specs: list[str]) -> dict[str, Path]:
    """``["NAME=CKPT", ...]`` -> ``{name: path}``; clear errors for bad or duplicate names and
    missing files."""
    if not specs:
        raise ValueError("give at least one --model NAME=CKPT")
    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ValueError(f"--model {spec!r}: expected NAME=CKPT, e.g. demo=runs/demo/last.pt")
        if not NAME.match(name):
            raise ValueError(
                f"--model {spec!r}: the name must be 1-64 letters, digits, '_', '.' or '-'"
            )
        if name in models:
            raise ValueError(f"--model {spec!r}: the name {name!r} is given twice")
        ckpt = Path(path)
        if not ckpt.is_file():
            raise FileNotFoundError(f"--model {spec!r}: no checkpoint file {ckpt}")
        models[name] = ckpt
    return models


def load_models(
    models: dict[str, Path],
    device: str = "auto",
    engine: str | None = None,
    export_dir: Path | None = None,
) -> dict[str, LoadedModel]:
    """Load every model once; an unreadable one raises ``ValueError`` naming its file. A
    ``.onnx`` file (``gleam export``) runs with ONNX Runtime; with ``engine="onnx"`` a checkpoint
    is exported into ``export_dir`` first and runs so too."""
    from gleam_mri.onnx.engine import onnx_run
    from gleam_mri.onnx.export import as_onnx

    loaded = {}
    for name, path in models.items():
        onnx_file = Path(path).suffix == ".onnx"
        if engine == "torch" and onnx_file:
            raise ValueError(f"--model {name}={path}: an ONNX model runs with --engine onnx")
        try:
            if onnx_file or engine == "onnx":
                path = as_onnx(path, export_dir or ".", name)
                run, onnx = onnx_run(path)
                loaded[name] = LoadedModel(name, Path(path), run, onnx.reconstruct)
                continue
            run, _ = load_run(path, device)
        except Exception as err:  # torch / pickle / config / onnx errors: all "unusable file"
            raise ValueError(f"--model {name}={path}: cannot load the model: {err}") from err
        loaded[name] = LoadedModel(name, Path(path), run)
    return loaded

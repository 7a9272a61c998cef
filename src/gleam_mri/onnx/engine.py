"""The ONNX Runtime engine: a graph written by ``gleam export`` run on the project's batches.

:class:`OnnxEngine` opens the file (its metadata checked), and :meth:`OnnxEngine.reconstruct`
gives the image of an :class:`~gleam_mri.data.batch.MRIBatch` at the batch's normalised scale,
as :func:`gleam_mri.inference.reconstruct` does, so ``gleam recon`` writes its files alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gleam_mri.config import Config
from gleam_mri.data.batch import MRIBatch
from gleam_mri.onnx.graph import FORMAT, INPUTS, OUTPUTS
from gleam_mri.training.run import Run
from gleam_mri.training.run_config import config_from_dict

__all__ = ["OnnxEngine", "onnx_run"]


class OnnxEngine:
    """An exported network under onnxruntime (CPU): ``kind``, ``model``, ``config`` from its
    metadata. Raises ``ValueError`` naming the file when it is missing, not ONNX, or not written
    by ``gleam export``."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such ONNX file")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only (not its notes on constant folding)
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a readable ONNX model ({err})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        names = [i.name for i in self.session.get_inputs()]
        if meta.get("gleam_format") != FORMAT or names != list(INPUTS):
            raise ValueError(
                f"{self.path}: not a network written by gleam export (format "
                f"{meta.get('gleam_format')!r}, inputs {names})"
            )
        self.metadata = dict(meta)
        self.kind, self.model = meta["kind"], meta["model"]
        self.config: Config = config_from_dict(json.loads(meta["config"]))

    def line_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The graph's mask ``(1, 1, 1, W)`` (or ``(1, 1, H, W)`` for networks that take one)
        from a batch's ``(B, 1, H | 1, W)``: the first item's (items of a batch share it)."""
        first = mask[:1]
        if not bool(((first == 0) | (first == 1)).all()):
            raise ValueError(f"{self.path}: the graph takes a 0/1 mask; this one holds others")
        if first.shape[-2] > 1 and bool((first == first[..., :1, :]).all()):
            first = first[..., :1, :]  # the same line mask on every readout row
        if first.shape[-2] > 1 and self.model == "varnet":
            raise ValueError(
                f"{self.path}: VarNet's graph takes a line mask (1, 1, 1, W); this mask varies "
                "along the readout"
            )
        return first

    @torch.no_grad()
    def reconstruct(self, batch: MRIBatch) -> torch.Tensor:
        """Complex image ``(B, H, W)`` of a 2D batch, at its normalised scale."""
        if batch.kspace.ndim != 4:
            raise ValueError(
                f"{self.path}: a 2D graph takes k-space (B, C, H, W); got "
                f"{tuple(batch.kspace.shape)} ({batch.meta[0].get('file', 'the batch')})"
            )
        scale = batch.scale.view(-1, 1, 1, 1).to(batch.kspace.real.dtype)
        maps = batch.maps.cpu().expand_as(batch.kspace).contiguous()
        feeds = {
            "kspace": torch.view_as_real(batch.kspace.cpu() * scale).numpy(),
            "mask": self.line_mask(batch.mask.cpu()).numpy().astype(np.float32),
            "maps": torch.view_as_real(maps).numpy(),
        }
        (image,) = self.session.run(list(OUTPUTS), feeds)
        return torch.view_as_complex(torch.from_numpy(image)) / scale[:, 0]


def onnx_run(path: str | Path) -> tuple[Run, OnnxEngine]:
    """The engine of an ONNX model file and a :class:`~gleam_mri.training.run.Run` carrying its
    config and kind (no network: what ``gleam recon`` and ``gleam serve`` read besides it)."""
    engine = OnnxEngine(path)
    return Run(engine.config, None, None, torch.device("cpu"), Path("."), engine.kind), engine

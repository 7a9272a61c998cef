"""The PyTorch engine: a trained network read back from its checkpoint, and its reconstruction.

:func:`load_run` reads a ``last.pt`` / ``adapt.pt`` (the config stored in it rebuilds the network,
whose weights are checked against it); :func:`reconstruct` runs it on a batch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gleam_mri.config import config_to_dict
from gleam_mri.data.batch import MRIBatch
from gleam_mri.devices import resolve_device
from gleam_mri.models.unrolled import Problem
from gleam_mri.training.checkpoint import check_compatible, load_checkpoint
from gleam_mri.training.run import Run, build_model_for
from gleam_mri.training.run_config import config_from_dict

__all__ = ["load_run", "reconstruct"]


def load_run(path: str | Path, device: str = "auto") -> tuple[Run, dict]:
    """The trained network of a checkpoint, ready for reconstruction; returns (run, checkpoint)."""
    ckpt = load_checkpoint(path)
    for key in ("config", "model", "kind"):
        if key not in ckpt:
            raise ValueError(f"{path}: not a gleam-mri training checkpoint (no {key!r} entry)")
    cfg = config_from_dict(ckpt["config"])
    cfg.train.device = device
    dev = resolve_device(device)
    net = build_model_for(cfg, ckpt["kind"], dev)
    check_compatible(ckpt, config_to_dict(cfg)["model"], path, model=net)
    net.load_state_dict(ckpt["model"])
    net.eval()
    return Run(cfg, net, None, dev, Path(cfg.train.out_dir), ckpt["kind"]), ckpt


@torch.no_grad()
def reconstruct(run: Run, batch: MRIBatch) -> torch.Tensor:
    """Complex image ``(B, *D)`` of a batch with a trained network (normalised scale)."""
    run.net.eval()
    return run.net(Problem.from_batch(batch.to(run.device)))

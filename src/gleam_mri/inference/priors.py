"""Pretrained networks shipped inside the package (``gleam_mri/priors/NAME.pt``).

A prior is a :mod:`gleam_mri.training.checkpoint` file holding only what reconstruction needs
(``config``, ``model``, ``kind``) and a ``prior`` record: its name, what it was trained on, the
command that trained it (``benchmarks/train_prior.py``) and its PSNR on a fixed simulated check
slice (:func:`check_slice`), recomputed by the tests. ``gleam recon --model NAME`` reconstructs
with one; ``gleam adapt`` starts from the prior of the scan's kind when neither ``--init`` nor
``--config`` is given and the network is the default one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gleam_mri.config import config_to_dict
from gleam_mri.data.datasets import normalized_item
from gleam_mri.inference.engine import Run, load_run, reconstruct
from gleam_mri.metrics import psnr
from gleam_mri.physics.masks import build_mask_func
from gleam_mri.physics.operators import SenseOp
from gleam_mri.physics.phantoms import phantom_2d
from gleam_mri.physics.simulate import simulate_multicoil
from gleam_mri.recon.classical import zero_filled
from gleam_mri.training.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "PRIORS_DIR",
    "PriorError",
    "check_psnr",
    "check_slice",
    "export_prior",
    "load_prior",
    "prior_for_kind",
    "prior_names",
    "resolve_prior",
    "shipped_start",
]

PRIORS_DIR = Path(__file__).resolve().parents[1] / "priors"
CHECK_SHAPE = (128, 128)
CHECK_MASK = {"name": "random", "center_fractions": [0.08], "accelerations": [4]}


class PriorError(ValueError):
    """A prior that does not exist, cannot be read or does not match its record."""


def prior_names(folder: Path = PRIORS_DIR) -> list[str]:
    """The names of the shipped priors (file stems)."""
    return sorted(p.stem for p in Path(folder).glob("*.pt"))


def prior_path(name: str, folder: Path = PRIORS_DIR) -> Path:
    """The file of prior ``name``; :class:`PriorError` listing the shipped ones if absent."""
    path = Path(folder) / f"{name}.pt"
    if not path.is_file():
        known = ", ".join(prior_names(folder)) or "none"
        raise PriorError(f"no shipped prior named {name!r} (shipped: {known})")
    return path


def resolve_prior(name_or_path: str | Path) -> Path:
    """The file of a prior given by file (an existing file, or anything written as a path) or
    by a shipped prior's name (:func:`prior_path`: :class:`PriorError` when unknown)."""
    path = Path(name_or_path)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return path
    return prior_path(str(name_or_path))


def load_prior(name_or_path: str | Path, device: str = "auto") -> tuple[Run, dict[str, Any]]:
    """The prior's network ready for reconstruction, and its ``prior`` record.

    ``name_or_path``: a shipped prior's name or a prior file. Raises :class:`PriorError` naming
    the file when it is unreadable, lacks its record, or its weights do not fit its config.
    """
    path = resolve_prior(name_or_path)
    try:
        run, ckpt = load_run(path, device)
    except Exception as err:  # corrupt file, missing entries, weights of another network
        where = "" if str(path) in str(err) else f"{path}: "
        raise PriorError(f"not a usable gleam-mri prior: {where}{err}") from err
    record = ckpt.get("prior")
    if not isinstance(record, dict) or "check_psnr" not in record:
        raise PriorError(f"{path}: a checkpoint without its prior record (no 'prior' entry)")
    return run, record


def prior_for_kind(kind: str, folder: Path = PRIORS_DIR) -> Path | None:
    """The shipped prior trained on data of ``kind`` (``2d``, ``3d``, ``cine``), if any."""
    for name in prior_names(folder):
        if load_checkpoint(Path(folder) / f"{name}.pt").get("kind") == kind:
            return Path(folder) / f"{name}.pt"
    return None


def shipped_start(
    kind: str, model_config: dict, name: str | None = None
) -> tuple[dict | None, str]:
    """The weights ``{"kind", "model"}`` of the shipped prior ``name`` (default: the one for
    ``kind``) when its network is the one described by ``model_config`` (a config's ``model``
    section), else ``None``; and where the weights come from, for the user (``"prior NAME"`` or
    ``"scratch (why)"``)."""
    path = prior_for_kind(kind) if name is None else prior_path(name)
    if path is None:
        return None, f"scratch (no shipped prior for {kind} data)"
    run, record = load_prior(path)
    if config_to_dict(run.cfg)["model"] != model_config:
        return None, f"scratch (the shipped prior {record['name']} is another network)"
    return {"kind": run.kind, "model": run.net.state_dict()}, f"prior {record['name']}"


def check_slice(seed: int = 0):
    """The fixed simulated check slice: a 128 x 128 phantom head, 8 simulated coils, 40 dB SNR,
    random lines at 4x (8 % centre), true maps; a B=1 :class:`MRIBatch` normalised to
    ``max |A^H y| = 1`` with its magnitude target."""
    rng = np.random.default_rng(seed)
    acq = simulate_multicoil(phantom_2d(CHECK_SHAPE, rng), 8, 2, rng, snr_db=40.0)
    kspace, maps = torch.from_numpy(acq.kspace), torch.from_numpy(acq.maps)
    mask = build_mask_func(dict(CHECK_MASK))(tuple(kspace.shape), seed)  # (1, 1, W)
    measured = kspace * mask
    scale = zero_filled(SenseOp(maps[None], mask[None]), measured[None]).abs().max().reshape(1)
    meta = {"file": "check-slice", "slice": 0}
    target = torch.from_numpy(acq.target)
    return normalized_item(measured, mask, maps, target, scale, 2, meta)


def check_psnr(run: Run) -> float:
    """PSNR (dB) of the network's magnitude image of :func:`check_slice` against its target."""
    batch = check_slice()
    image = reconstruct(run, batch)[0].abs().cpu().numpy()
    return float(psnr(batch.target[0].numpy(), image))


def export_prior(checkpoint: str | Path, out: str | Path, name: str, sources: dict) -> dict:
    """Write the network of a ``gleam train`` checkpoint as prior ``out`` (weights, config, kind
    and the ``prior`` record with its check-slice PSNR; optimizer state dropped). Returns the
    record."""
    run, ckpt = load_run(checkpoint, "cpu")
    record = {"name": name, **sources, "check_psnr": check_psnr(run), "step": ckpt.get("step")}
    keys = ("config", "model_config", "model", "kind")
    save_checkpoint(out, {**{key: ckpt[key] for key in keys}, "prior": record})
    return record

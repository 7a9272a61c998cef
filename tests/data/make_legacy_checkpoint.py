"""Writes ``legacy_checkpoint.pt`` and ``legacy_checkpoint_expected.pt``: a small checkpoint of
the layout before the training stack moved (issue 23, commit cd0afd5), and what its network
reconstructs from a fixed batch. ``tests/test_legacy_checkpoint.py`` loads them with today's code.

Run once, from the repository root, with the code of that commit::

    python tests/data/make_legacy_checkpoint.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from gleam_mri.config import load_config
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.training.loop import fit
from gleam_mri.training.run import load_run

HERE = Path(__file__).resolve().parent
SETS = [
    "model.unrolls=2", "model.features=4", "model.blocks=1",
    "strategy.name=greedy", "strategy.modules=2",
    "data.batch_size=1", "train.steps=3", "train.val_every=0", "train.ckpt_every=3",
    "train.log_every=1", "train.tensorboard=false", "train.device=cpu",
]  # fmt: skip


def fixed_batch_inputs() -> dict[str, torch.Tensor]:
    """k-space (1, 4, 16, 12), mask (1, 1, 1, 12), maps (1, 4, 16, 12) from a seeded generator."""
    g = torch.Generator().manual_seed(23)
    maps = torch.randn(1, 4, 16, 12, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(1, 1, 1, 12)
    mask[..., ::2] = 1.0
    kspace = torch.randn(1, 4, 16, 12, dtype=torch.complex64, generator=g) * mask
    return {"kspace": kspace, "mask": mask, "maps": maps}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        splits = {"train": 0.5, "val": 0.5, "test": 0.0}
        spec = SyntheticSpec("2d", 2, 2, (16, 12), n_coils=4, seed=3, splits=splits)
        write_synthetic_dataset(data, spec, progress=False)
        out = Path(tmp) / "run"
        sets = [*SETS, f"data.root={data}", f"train.out_dir={out}"]
        path = fit(load_config(None, sets), progress=False)
        ckpt = torch.load(path, weights_only=True)
        ckpt["config"]["data"]["root"] = "data"  # no path of this machine in the file
        ckpt["config"]["train"]["out_dir"] = "runs/legacy"
        torch.save(ckpt, HERE / "legacy_checkpoint.pt")
    run, _ = load_run(HERE / "legacy_checkpoint.pt", "cpu")
    from gleam_mri.data.batch import MRIBatch
    from gleam_mri.training.run import reconstruct

    inputs = fixed_batch_inputs()
    batch = MRIBatch(inputs["kspace"], inputs["mask"], inputs["maps"], None, torch.ones(1), 2)
    torch.save({"image": reconstruct(run, batch)}, HERE / "legacy_checkpoint_expected.pt")


if __name__ == "__main__":
    main()

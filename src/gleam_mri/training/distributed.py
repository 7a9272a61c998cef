"""``gleam train`` with ``strategy.name=pipeline``: pipelined GLEAM, one process per stage.

Started by ``torchrun`` (gloo on CPU, NCCL on GPU); every rank builds the same model (same seed)
and the same step-indexed batches, trains its stage with
:class:`~gleam_mri.training.strategies.pipeline.PipelineGreedy`, writes ``stage<r>.pt``, and rank
0 merges the stages into ``last.pt`` in the ordinary checkpoint format, so ``gleam eval`` and
``gleam recon`` use it as they use any other run::

    torchrun --standalone --nproc-per-node 2 -m gleam_mri.cli train CONFIG \\
        --set strategy.name=pipeline --set strategy.modules=8
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from gleam_mri.config import Config, config_to_dict, save_config
from gleam_mri.models.builders import build_model
from gleam_mri.training.batches import StepBatches
from gleam_mri.training.checkpoint import load_checkpoint, rng_state, save_checkpoint
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies.pipeline import PipelineGreedy


def fit_pipeline(cfg: Config) -> Path:
    """Train this rank's stage; returns the merged checkpoint path (written by rank 0)."""
    from gleam_mri.training.loop import training_dataset

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError(
            "strategy.name=pipeline runs one process per stage: start it with "
            "torchrun --standalone --nproc-per-node N -m gleam_mri.cli train CONFIG ..."
        )
    cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
    timeout = timedelta(seconds=max(60.0, 2 * cfg.strategy.timeout))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    try:
        rank = dist.get_rank()
        device = torch.device("cpu")
        if cuda:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        root = Path(cfg.data.root)
        train_set = training_dataset(cfg, root / cfg.data.train_split)
        kind = train_set.infos[0].kind
        torch.manual_seed(cfg.train.seed)
        net = build_model(cfg.model, kind).to(device)
        module_loss = build_loss(cfg.strategy.module_loss) if cfg.strategy.module_loss else None
        stage = PipelineGreedy(
            net,
            build_loss(cfg.train.loss),
            modules=cfg.strategy.modules,
            module_loss=module_loss,
            optimizer=cfg.optim.name,
            lr=cfg.optim.lr,
            optimizer_kwargs=dict(cfg.optim.kwargs),
            grad_clip=cfg.optim.grad_clip,
            timeout=cfg.strategy.timeout,
        )
        batches = StepBatches(train_set, cfg.data.batch_size, cfg.train.seed)
        records = stage.train(
            cfg.train.steps, lambda t: batches[t].to(device), staleness=cfg.strategy.staleness
        )
        out = Path(cfg.train.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / f"metrics_stage{rank}.jsonl").open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        save_checkpoint(out / f"stage{rank}.pt", stage.state_dict())
        dist.barrier()
        if rank == 0:
            _merge(cfg, net, kind, out, dist.get_world_size())
        dist.barrier()
        return out / "last.pt"
    finally:
        dist.destroy_process_group()


def _merge(cfg: Config, net: torch.nn.Module, kind: str, out: Path, world: int) -> None:
    """Write ``last.pt`` (the ordinary checkpoint format) from the stages' parameters."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    for r in range(world):
        stage = load_checkpoint(out / f"stage{r}.pt")
        state.update(stage["params"])
    save_config(cfg, out / "config.yaml")
    save_checkpoint(
        out / "last.pt",
        {
            "step": cfg.train.steps,
            "kind": kind,
            "config": config_to_dict(cfg),
            "model_config": config_to_dict(cfg)["model"],
            "model": state,
            "strategy": {"name": "pipeline", "stages": world},
            "rng": rng_state(),
        },
    )

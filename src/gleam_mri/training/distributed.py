"""``gleam train`` with ``strategy.name=pipeline``: pipelined GLEAM, stages x replicas.

Started by ``torchrun`` (gloo on CPU, NCCL on GPU) with ``world = stages x strategy.replicas``
processes (layout: :mod:`gleam_mri.training.strategies.stage_link`). Every rank builds the same
model (same seed) and the same step-indexed batches (replica ``i`` loads shard ``i`` of each
batch, ``data.batch_size`` must be a multiple of ``strategy.replicas``) and trains its stage with
:class:`~gleam_mri.training.strategies.pipeline.PipelineGreedy`.

- Checkpoints: replica 0 of each stage writes ``stage<s>_step<N>.pt`` every ``train.ckpt_every``
  steps and at the end (:mod:`gleam_mri.training.stage_checkpoints`); ``--resume`` continues
  from the newest step every stage saved. At the end rank 0 gathers the stages' parameters and
  writes ``last.pt`` in the ordinary format, so ``gleam eval`` / ``gleam recon`` use it as any
  other run.
- Validation (``train.val_every``): the whole chain runs on the validation set through the
  pipeline links between two training steps; the last stage computes the fastMRI metrics.
- Logging from one rank: replica 0 of the last stage writes ``metrics.jsonl`` (the final loss,
  validation), TensorBoard and the progress bar; replica 0 of every stage writes its module
  losses to ``metrics_stage<s>.jsonl``.

One machine, N processes::

    torchrun --standalone --nproc-per-node N -m gleam_mri.cli train CONFIG \\
        --set strategy.name=pipeline --set strategy.modules=8 --set strategy.replicas=1
"""

from __future__ import annotations

import itertools
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from gleam_mri.config import Config, config_to_dict, save_config
from gleam_mri.models.builders import build_model
from gleam_mri.recon.evaluate import evaluate, summarize
from gleam_mri.training.batches import StepBatches, step_loader, validation_loader
from gleam_mri.training.checkpoint import (
    check_compatible,
    load_checkpoint,
    rng_state,
    save_checkpoint,
)
from gleam_mri.training.logging import RunLogger
from gleam_mri.training.loop import is_due, training_dataset
from gleam_mri.training.losses import build_loss
from gleam_mri.training.stage_checkpoints import prune, resume_step, stage_file
from gleam_mri.training.strategies.base import NonFiniteLossError
from gleam_mri.training.strategies.pipeline import PipelineGreedy


class PipelineStopped(RuntimeError):
    """A stage met a non-finite loss; the per-stage checkpoints already written are kept."""


def fit_pipeline(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Train this rank's stage (under torchrun); returns the merged checkpoint path."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError(
            "strategy.name=pipeline runs one process per stage and replica: start it with "
            "torchrun --standalone --nproc-per-node N -m gleam_mri.cli train CONFIG ..."
        )
    cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
    timeout = timedelta(seconds=max(60.0, 2 * cfg.strategy.timeout))
    if cuda:  # NCCL's work.wait(timeout) blocks and raises only in blocking-wait mode (untested)
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    try:
        device = torch.device("cpu")
        if cuda:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        return _PipelineRun(cfg, device, resume, progress).run()
    finally:
        dist.destroy_process_group()


class _PipelineRun:
    """One rank's run: data, stage, resume, hooks (validation, checkpoints, logs), merge."""

    def __init__(self, cfg: Config, device: torch.device, resume: bool, progress: bool) -> None:
        self.cfg, self.device = cfg, device
        root = Path(cfg.data.root)
        train_set = training_dataset(cfg, root / cfg.data.train_split)
        self.kind = train_set.infos[0].kind
        val_set = training_dataset(cfg, root / cfg.data.val_split, deterministic_masks=True)
        torch.manual_seed(cfg.train.seed)
        self.net = build_model(cfg.model, self.kind).to(device)
        s = cfg.strategy
        self.stage = PipelineGreedy(
            self.net,
            build_loss(cfg.train.loss),
            modules=s.modules,
            module_loss=build_loss(s.module_loss) if s.module_loss else None,
            optimizer=cfg.optim.name,
            lr=cfg.optim.lr,
            optimizer_kwargs=dict(cfg.optim.kwargs),
            grad_clip=cfg.optim.grad_clip,
            scheduler=cfg.optim.scheduler,
            scheduler_kwargs=dict(cfg.optim.scheduler_kwargs),
            amp=cfg.optim.amp,
            timeout=s.timeout,
            replicas=s.replicas,
        )
        self.layout = self.stage.layout
        self.out = Path(cfg.train.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.start = resume_step(self.out, self.layout, self.stage.rank, resume)
        if self.start:
            self._load(stage_file(self.out, self.stage.stage, self.start))
        shard = (self.stage.replica, self.layout.replicas)
        self.batches = StepBatches(train_set, cfg.data.batch_size, cfg.train.seed, shard=shard)
        self.val_loader = validation_loader(val_set, cfg.data.batch_size, cfg.data.max_val_items)
        self.saves = self.stage.replica == 0
        self.logs = self.saves and self.stage.is_last
        self.stage_log = None
        self.logger = None
        self.bar = None
        if self.saves:
            name = f"metrics_stage{self.stage.stage}.jsonl"
            self.stage_log = RunLogger(self.out, self.start, tensorboard=False, filename=name)
        if self.logs:
            save_config(cfg, self.out / "config.yaml")
            self.logger = RunLogger(self.out, self.start, tensorboard=cfg.train.tensorboard)
            self.bar = tqdm(
                total=cfg.train.steps,
                initial=self.start,
                desc=f"pipeline ({self.layout.stages} stages x {self.layout.replicas} replicas)",
                unit="step",
                disable=not progress,
            )

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        check_compatible(state, config_to_dict(self.cfg)["model"], path)
        try:
            self.stage.load_state_dict(state)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    # ------------------------------------------------------------------ hooks

    def validate(self, done: int) -> None:
        """Run the whole chain on the validation set; the last stage scores and logs it."""
        batches = (b.to(self.device) for b in self.val_loader)
        if not self.stage.is_last:
            for i, batch in enumerate(batches):
                self.stage.forward_chain(batch, i)
            return
        counter, losses = itertools.count(), []
        loss_fn = build_loss(self.cfg.train.loss)

        def reconstruct(batch):
            image = self.stage.forward_chain(batch, next(counter))
            losses.append(float(loss_fn(image, batch)))
            return image

        results = evaluate(batches, reconstruct, device=self.device)
        metrics = {f"val/{k}": v["mean"] for k, v in summarize(results).items()}
        metrics["val/loss"] = sum(losses) / max(len(losses), 1)
        if self.logger is not None:
            images = is_due(done, self.cfg.train.image_every, self.cfg.train.steps)
            self.logger.validation(done, metrics, results if images else [])
            self.bar.write(
                f"step {done}: val loss {metrics['val/loss']:.4g}  "
                f"PSNR {metrics['val/PSNR']:.2f}  SSIM {metrics['val/SSIM']:.4f}"
            )

    def on_step(self, done: int, metrics: dict[str, Any]) -> None:
        train = self.cfg.train
        if self.saves and is_due(done, train.log_every, train.steps):
            self.stage_log.scalars(done, metrics)
        if self.logs:
            if is_due(done, train.log_every, train.steps):
                last = metrics[f"loss/module_{self.stage.n_modules - 1}"]
                self.logger.scalars(done, {"loss": last})
            self.bar.update(1)
        if is_due(done, train.val_every, train.steps) and train.val_every > 0:
            self.validate(done)
        if self.saves and is_due(done, train.ckpt_every, train.steps):
            state = {**self.stage.state_dict(), "model_config": config_to_dict(self.cfg)["model"]}
            save_checkpoint(stage_file(self.out, self.stage.stage, done), state)
            lag = self.cfg.strategy.staleness + 1
            prune(self.out, self.layout, self.stage.stage, done, train.ckpt_every, lag)

    # ------------------------------------------------------------------ run

    def run(self) -> Path:
        cfg = self.cfg
        try:
            if self.start == 0 and cfg.train.val_every > 0:
                self.validate(0)
            steps = cfg.train.steps - self.start
            loader = step_loader(self.batches, self.start, cfg.train.steps, cfg.data.num_workers)
            prefetched = enumerate(loader, start=self.start)  # data.num_workers load ahead

            def batch_for_step(t: int):
                step, batch = next(prefetched)
                assert step == t, f"batch of step {step} where {t} was expected"
                return batch.to(self.device)

            self.stage.train(
                steps, batch_for_step, staleness=cfg.strategy.staleness, on_step=self.on_step
            )
        except NonFiniteLossError as err:
            raise PipelineStopped(
                f"training stopped: {err}. The per-stage checkpoints written so far are kept in "
                f"{self.out} (continue with --resume after fixing the cause)"
            ) from err
        finally:
            for log in (self.stage_log, self.logger, self.bar):
                if log is not None:
                    log.close()
        return self.merge()

    def merge(self) -> Path:
        """Rank 0 gathers every stage's parameters and writes ``last.pt`` (collective)."""
        mine = None
        if self.saves:
            mine = {k: v.detach().cpu() for k, v in self.stage.state_dict()["params"].items()}
        gathered: list | None = [None] * self.layout.world_size if self.stage.rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        path = self.out / "last.pt"
        if self.stage.rank == 0:
            model = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
            for params in gathered:
                model.update(params or {})
            cfg = config_to_dict(self.cfg)
            save_checkpoint(
                path,
                {
                    "step": self.cfg.train.steps,
                    "kind": self.kind,
                    "config": cfg,
                    "model_config": cfg["model"],
                    "model": model,
                    "strategy": {
                        "name": "pipeline",
                        "stages": self.layout.stages,
                        "replicas": self.layout.replicas,
                    },
                    "rng": rng_state(),
                },
            )
        dist.barrier()
        return path

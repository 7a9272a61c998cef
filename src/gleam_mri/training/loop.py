"""``fit``: the training loop, readable in one sitting, for every strategy and every caller.

build data, model and strategy -> (resume) -> for each step: batch, ``strategy.train_step``,
log (JSONL, TensorBoard, progress bar), validate, checkpoint -> final checkpoint.

The same driver runs ``gleam train``, ``gleam adapt`` (one scan's own k-space, given as
:class:`~gleam_mri.training.data.TrainingData`), a study arm and each process of a pipelined run
(under ``torchrun``): the strategy says what differs, through :meth:`Strategy.session` (the
device, and the process group for a distributed strategy), :meth:`Strategy.checkpoint_store`
(``last.pt``, or per-stage files merged at the end), ``data_shard`` (the part of each batch this
process trains on), ``log_name`` / ``reports`` (which process writes which log) and
``produces_image`` (where validation is scored). Which weights the run keeps and when it stops
early is the config's ``train.keep`` / ``patience`` / ``average``
(:mod:`gleam_mri.training.selection`). A resumed run continues bit-identically on CPU: batches
depend only on (seed, step) (:mod:`gleam_mri.training.batches`) and checkpoints hold the model,
the strategy's optimizers and schedulers, the RNG states, the weight selection and the step.

Faults: a full disk during a checkpoint write (:class:`DiskFullError`; the previous checkpoint is
intact) and a process out of GPU memory (:class:`OutOfMemoryStop`, naming the pipeline stage
and the ``gleam plan`` budget) stop training with :class:`TrainingStopped`. A worker restarted by
``torchrun``'s elastic agent (``--max-restarts``; ``TORCHELASTIC_RESTART_COUNT > 0``) resumes
from its checkpoints as if ``resume`` were given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gleam_mri.config import Config, save_config
from gleam_mri.data.batch import MRIBatch
from gleam_mri.meters import LiveTensorMeter, cuda_peak_memory, storage_bytes
from gleam_mri.recon.evaluate import evaluate, summarize
from gleam_mri.training.batches import step_loader
from gleam_mri.training.checkpoint import DiskFullError
from gleam_mri.training.data import TrainingData, folder_data
from gleam_mri.training.distributed import elastic_restart
from gleam_mri.training.errors import NonFiniteLossError, TrainingStopped, out_of_memory_stop
from gleam_mri.training.logging import RunLogger
from gleam_mri.training.losses import training_loss
from gleam_mri.training.run import Run, build_model_for, read_metrics_log
from gleam_mri.training.selection import WeightSelection, weights_swapped
from gleam_mri.training.strategies import STRATEGIES, strategy_from_config

__all__ = [
    "Run",
    "TrainingStopped",
    "build_run",
    "fit",
    "is_due",
    "read_metrics_log",
    "train",
    "validate",
]

OnValidation = Callable[[Run, dict[str, float]], None]


def build_run(cfg: Config, kind: str, device: Any, net: torch.nn.Module | None = None) -> Run:
    """Model (seeded by ``cfg.train.seed``; or ``net``, moved to ``device``) and strategy for data
    of ``kind`` on ``device``, with the config's weight selection."""
    net = build_model_for(cfg, kind, device) if net is None else net.to(device)
    train = cfg.train
    selection = WeightSelection(train.keep, train.patience, train.average)
    strategy = strategy_from_config(cfg, net)
    return Run(cfg, net, strategy, device, Path(train.out_dir), kind, selection=selection)


def is_due(done: int, every: int, total: int) -> bool:
    """Whether a periodic action (``every`` steps; 0 = only at the end) runs after step ``done``."""
    return done == total or (every > 0 and done % every == 0)


def validate(run: Run, loader, loss_fn) -> tuple[dict[str, float], list] | None:
    """Validation loss and fastMRI metrics (means over volumes), and the per-volume results.

    Items without a target (self-supervised data) add only to the loss (the held-out k-space
    loss); metrics are the means over the items that have one, absent when none has.

    ``None`` on a process whose strategy does not produce the image (a pipeline stage before the
    last): it only runs its part of the chain.
    """
    batches = (batch.to(run.device) for batch in loader)
    if not run.strategy.produces_image:
        for batch in batches:
            run.strategy.reconstruct(batch)
        return None
    losses: list[float] = []

    def reconstruct_batch(batch):
        image = run.strategy.reconstruct(batch)
        losses.append(float(loss_fn(image, batch)))
        return image

    def with_target(batches):
        for batch in batches:
            if batch.target is None:
                reconstruct_batch(batch)
            else:
                yield batch

    results = evaluate(with_target(batches), reconstruct_batch, device=run.device)
    out = {f"val/{k}": v["mean"] for k, v in summarize(results).items()} if results else {}
    out["val/loss"] = sum(losses) / max(len(losses), 1)
    return out, results


def measured_step(run: Run, batch: MRIBatch) -> dict[str, float]:
    """One training step whose peak memory is recorded in ``run.step_memory``: the CUDA
    allocator's peak, or on the CPU the live tensors (those that existed before included)."""
    strategy, device = run.strategy, run.device
    if device.type == "cuda":
        peak = cuda_peak_memory(lambda: strategy.train_step(batch), device)
        stats, used, method = peak.result, peak.peak_bytes, "CUDA max_memory_allocated"
    else:
        with LiveTensorMeter(baseline=storage_bytes(strategy.net, batch)) as meter:
            stats = strategy.train_step(batch)
        used, method = meter.absolute_peak_bytes, "live tensor bytes (CPU)"
    run.step_memory = {"bytes": int(used), "method": method}
    return {**stats, "memory_bytes": float(used)}


def fit(cfg: Config, resume: bool = False, progress: bool = True, **options: Any) -> Path:
    """Train ``cfg``; returns the path of the run's checkpoint (``last.pt``, or ``best.pt`` with
    ``train.keep: best``). ``options``: :func:`train`'s (``data``, ``net``, ``on_validation``).
    Raises :class:`TrainingStopped`."""
    return train(cfg, resume, progress, **options).checkpoint


def train(
    cfg: Config,
    resume: bool = False,
    progress: bool = True,
    *,
    data: TrainingData | None = None,
    net: torch.nn.Module | None = None,
    on_validation: OnValidation | None = None,
) -> Run:
    """Train ``cfg`` and return the finished :class:`Run` (``run.checkpoint``: its checkpoint).

    ``data``: what to train and validate on (default: the config's folders); ``net``: the
    network to train (default: built from ``cfg.model``, seeded by ``train.seed``); a resumed
    run loads its checkpoint into it either way. ``on_validation(run, metrics)`` is called after
    every validation with the validated weights in ``run.net``. A worker that ``torchrun``'s
    elastic agent restarted resumes (``resume`` is implied).
    """
    resume = resume or elastic_restart() > 0
    with STRATEGIES[cfg.strategy.name].session(cfg) as device:
        return _train(cfg, device, resume, progress, data, net, on_validation)


def _process_name(cfg: Config, strategy: Any) -> str:
    """Which process this is, for messages: the pipeline stage and rank, or the strategy."""
    layout = getattr(strategy, "layout", None)
    if layout is None:
        return f"training ({cfg.strategy.name})"
    replica = f", replica {strategy.replica}" if layout.replicas > 1 else ""
    return (
        f"pipeline stage {strategy.stage} of {layout.stages} (rank {strategy.rank}{replica}, "
        f"modules {strategy.module_ids})"
    )


def _train(
    cfg: Config,
    device: Any,
    resume: bool,
    progress: bool,
    data: TrainingData | None,
    net: torch.nn.Module | None,
    on_validation: OnValidation | None,
) -> Run:
    train = cfg.train
    data = folder_data(cfg) if data is None else data
    run = build_run(cfg, data.kind, device, net)
    run.identity = data.identity
    strategy, selection = run.strategy, run.selection
    run.out_dir.mkdir(parents=True, exist_ok=True)
    store = strategy.checkpoint_store(run)
    start = store.resume(resume)
    if strategy.reports:
        save_config(cfg, run.out_dir / "config.yaml")
    loss_fn = training_loss(train.loss, train.supervision)
    batches = data.batches(strategy.data_shard)
    logger = None
    if strategy.log_name is not None:
        tensorboard = train.tensorboard and strategy.reports
        logger = RunLogger(run.out_dir, start, tensorboard=tensorboard, filename=strategy.log_name)
    bar = tqdm(
        total=train.steps,
        initial=start,
        desc=f"training ({cfg.strategy.name})",
        unit="step",
        disable=not (progress and strategy.reports),
    )

    def validation(done: int) -> None:
        with weights_swapped(run.net, selection.averaged):  # the moving average, if any
            scored = validate(run, data.validation, loss_fn)
            if scored is None:  # a pipeline stage before the last: its part of the chain only
                return
            metrics, results = scored
            selection.record(run.net, done, metrics["val/loss"])
            if on_validation is not None:
                on_validation(run, metrics)
        if not strategy.reports:
            return
        metrics["time/train_s"] = run.train_seconds
        images = is_due(done, train.image_every, train.steps)
        logger.validation(done, metrics, results if images else [])
        scores = ""
        if results:
            scores = f"  PSNR {metrics['val/PSNR']:.2f}  SSIM {metrics['val/SSIM']:.4f}"
        bar.write(f"step {done}: val loss {metrics['val/loss']:.4g}{scores}")

    step = done = start
    try:
        if start == 0 and train.val_every > 0:  # the untrained network, for reference
            validation(0)
        loader = step_loader(batches, start, train.steps, cfg.data.num_workers)
        for step, batch in enumerate(loader if not selection.stopped else (), start=start):
            started = time.perf_counter()
            batch = batch.to(run.device)
            if step == 0 and train.measure_memory:
                stats = measured_step(run, batch)
            else:
                stats = strategy.train_step(batch)
            selection.after_step(run.net, step + 1, stats["loss"])
            stats["time/step_s"] = time.perf_counter() - started
            run.train_seconds += stats["time/step_s"]
            stats["time/train_s"] = run.train_seconds
            done = step + 1
            if logger is not None and is_due(done, train.log_every, train.steps):
                logger.scalars(done, stats)
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.4g}")
            if train.val_every > 0 and is_due(done, train.val_every, train.steps):
                validation(done)
            if is_due(done, train.ckpt_every, train.steps) or selection.stopped:
                store.save(done)
            if selection.stopped:
                bar.write(f"step {done}: no better validation in {train.patience}: stopped")
                break
        strategy.finish()
    except NonFiniteLossError as err:
        stopped = f"training stopped at step {step + 1}: {err}. {store.kept()}"
        raise TrainingStopped(stopped) from err
    except DiskFullError as err:
        raise TrainingStopped(f"training stopped after step {step + 1}: {err}") from err
    except torch.cuda.OutOfMemoryError as err:
        raise out_of_memory_stop(err, _process_name(cfg, strategy), step + 1, run.device) from err
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    run.checkpoint = store.finish(done)
    return run

"""Pipelined greedy (GLEAM) training across processes: stages x data-parallel replicas.

No gradient crosses a module boundary under greedy training, so module ``m`` can train on batch
``t`` while module ``m + 1`` trains on batch ``t - 1``. The ranks of the default process group
(started with ``torchrun``: gloo on CPU, NCCL on GPU) form ``stages x replicas``
(:class:`~gleam_mri.training.strategies.stage_link.PipelineLayout`, stage-major). Stage ``s``
owns a contiguous, balanced group of the ``M`` modules of ``net.split(M)`` (``M >= stages``) and
one optimizer per module (as :class:`~gleam_mri.training.strategies.greedy.Greedy`); its
replicas train on different shards of each batch and average their gradients before every step.

Design: every rank builds its batch itself from a shared, seeded, step-indexed batch source
``batch_for_step(step) -> MRIBatch`` (replica ``i`` gets shard ``i`` of the step's batch); only
the *detached* state crosses stages (``isend`` / ``irecv``, :class:`StageLink`). Rebuilding the
batch locally costs a file read and a mask draw; sending k-space, maps, mask and target instead
would multiply the traffic by about ``2 x coils`` (``benchmarks/pipeline_throughput.py`` measures
both). The :class:`Problem` is rebuilt locally from the batch. A network with a prologue (VarNet's
learned coil maps, trained with module 0) sends the detached prepared maps with each state.

Flow control: after training on batch ``t`` stage ``s`` sends an acknowledgement ``t`` upstream.
Stage ``s`` starts batch ``t`` only once batch ``t - 1 - staleness`` was acknowledged downstream,
so at most ``staleness + 1`` batches are in flight between neighbours. ``staleness=0`` is the
synchronous schedule; the default ``1`` lets stage ``s`` work on batch ``t + 1`` while stage
``s + 1`` trains on ``t``. Every state is computed before the optimizer step of its batch, so the
parameters after ``n`` steps equal those of single-process simultaneous :class:`Greedy` on the
same data order, whatever the staleness and the number of replicas (equal shards, mean losses).

Hooks: ``train(..., on_step=f)`` calls ``f(done, metrics)`` after each optimizer step and
*before* the acknowledgement goes upstream (per-stage checkpoints, validation: see
:mod:`gleam_mri.training.distributed`). :meth:`forward_chain` runs the whole chain on a batch for
validation, through the same links (headers tagged with negative steps).

Faults: every wait has ``timeout`` seconds; a peer that died (connection closed) or hangs raises
:class:`PipelinePeerError` naming the peer rank. A non-finite loss on any replica stops all the
stage's replicas (:class:`NonFiniteLossError`) before any parameter of that batch changes. Usage,
under ``torchrun --nproc-per-node S*R script.py``::

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # "nccl" on GPUs
    stage = PipelineGreedy(build_net(seed=0), loss_fn, modules=M, replicas=R, timeout=60)
    stage.train(steps, batch_for_step, staleness=1)  # same seeded batch source on every rank
    torch.save(stage.state_dict(), f"stage{stage.stage}.pt")
    dist.destroy_process_group()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from gleam_mri.data.batch import MRIBatch
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.training.losses import LossFn
from gleam_mri.training.strategies.base import (
    NonFiniteLossError,
    build_optimizer,
    build_scheduler,
)
from gleam_mri.training.strategies.stage_link import (
    PipelineLayout,
    PipelinePeerError,
    StageLink,
    new_stage_groups,
)

__all__ = ["PipelineGreedy", "PipelineLayout", "PipelinePeerError"]

BatchSource = Callable[[int], MRIBatch]


class PipelineGreedy:
    """One rank (a replica of a stage) of pipelined greedy training.

    Args:
        net: the unrolled network, identical (same seed) on every rank.
        loss_fn: ``loss_fn(image (B, *D) complex, batch) -> scalar`` (last module).
        modules: number of modules ``M`` (``None``: one per iteration), ``M >= stages``.
        module_loss: loss of the intermediate modules (default ``loss_fn``).
        optimizer, lr, optimizer_kwargs: one ``torch.optim.<optimizer>`` per owned module.
        grad_clip: clip each module's (replica-averaged) gradient norm to this value.
        scheduler, scheduler_kwargs: optional ``torch.optim.lr_scheduler.<scheduler>`` per
            module, stepped after each optimizer step (as in the single-process strategies).
        amp: run the modules under bf16 autocast (losses in float32; states sent as computed).
        timeout: seconds any send / receive / all-reduce may wait before
            :class:`PipelinePeerError`.
        replicas: data-parallel replicas per stage (``world = stages x replicas``).
        rank, world_size: default: those of the initialised default process group.
    """

    name = "pipeline-greedy"

    def __init__(
        self,
        net: UnrolledNet,
        loss_fn: LossFn,
        *,
        modules: int | None = None,
        module_loss: LossFn | None = None,
        optimizer: str = "Adam",
        lr: float = 1e-3,
        optimizer_kwargs: dict | None = None,
        grad_clip: float | None = None,
        scheduler: str | None = None,
        scheduler_kwargs: dict | None = None,
        amp: bool = False,
        timeout: float = 60.0,
        replicas: int = 1,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if not isinstance(net, UnrolledNet):
            raise TypeError(f"{self.name}: net must be an UnrolledNet, got {type(net).__name__}")
        if not callable(loss_fn) or (module_loss is not None and not callable(module_loss)):
            raise TypeError(f"{self.name}: loss_fn and module_loss must be callable")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {grad_clip}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        if (rank is None or world_size is None) and not dist.is_initialized():
            raise RuntimeError(
                f"{self.name}: initialise the default process group first "
                "(torchrun + dist.init_process_group) or pass rank and world_size"
            )
        rank = dist.get_rank() if rank is None else int(rank)
        world_size = dist.get_world_size() if world_size is None else int(world_size)
        self.layout = PipelineLayout.from_world(world_size, int(replicas))
        self.stage, self.replica = self.layout.position(rank)
        self.rank, self.world_size = rank, world_size
        n_modules = len(net) if modules is None else int(modules)
        if n_modules < self.layout.stages:
            raise ValueError(
                f"{self.name}: {n_modules} modules cannot feed {self.layout.stages} stages "
                "(need modules >= stages = world size / replicas)"
            )
        group = None
        if self.layout.replicas > 1:
            if not dist.is_initialized():
                raise RuntimeError(f"{self.name}: replicas need an initialised process group")
            group = new_stage_groups(self.layout)[self.stage]
        self.link = StageLink(self.layout, rank, timeout, group, self.name)
        self.net = net
        self.loss_fn = loss_fn
        self.module_loss = module_loss if module_loss is not None else loss_fn
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.timeout = float(timeout)
        all_modules = net.split(n_modules)
        self.n_modules = n_modules
        groups = np.array_split(np.arange(n_modules), self.layout.stages)
        self.module_ids: list[int] = [int(m) for m in groups[self.stage]]
        self.modules: list[nn.Module] = [all_modules[m] for m in self.module_ids]
        empty = [m for m in self.module_ids if not list(all_modules[m].parameters())]
        if empty:
            raise ValueError(f"{self.name}: modules {empty} have no parameters; use fewer modules")
        self.optimizers = [
            build_optimizer(optimizer, mod.parameters(), lr, optimizer_kwargs)
            for mod in self.modules
        ]
        self.schedulers = (
            []
            if scheduler is None
            else [build_scheduler(scheduler, opt, scheduler_kwargs) for opt in self.optimizers]
        )
        self.amp = bool(amp)
        self.step = 0  # completed train steps of this stage

    # --------------------------------------------------------------------- introspection

    @property
    def is_first(self) -> bool:
        return self.stage == 0

    @property
    def is_last(self) -> bool:
        return self.stage == self.layout.stages - 1

    def parameter_names(self) -> list[str]:
        """Names (as in ``net.named_parameters()``) of the parameters this stage trains."""
        owned = {id(p) for mod in self.modules for p in mod.parameters()}
        return [name for name, p in self.net.named_parameters() if id(p) in owned]

    def _owned_parameters(self) -> list[nn.Parameter]:
        return [p for opt in self.optimizers for g in opt.param_groups for p in g["params"]]

    def state_dict(self) -> dict[str, Any]:
        """This stage's parameters, optimizers and step (one file per stage; replicas agree)."""
        params = dict(self.net.named_parameters())
        return {
            "strategy": self.name,
            "stage": self.stage,
            "stages": self.layout.stages,
            "n_modules": self.n_modules,
            "modules": self.module_ids,
            "step": self.step,
            "params": {n: params[n].detach().clone() for n in self.parameter_names()},
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [sched.state_dict() for sched in self.schedulers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of the same stage (same modules); ``ValueError`` if not."""
        mine = (self.name, self.n_modules, self.module_ids, sorted(self.parameter_names()))
        theirs = (
            state.get("strategy"),
            state.get("n_modules"),
            state.get("modules"),
            sorted(state.get("params", {})),
        )
        if mine != theirs:
            raise ValueError(
                f"{self.name} stage {self.stage}: the saved stage state (strategy, modules, "
                f"module ids, parameters) = {theirs[:3]} does not match this stage's {mine[:3]}"
            )
        params = dict(self.net.named_parameters())
        with torch.no_grad():
            for name, value in state["params"].items():
                params[name].copy_(value)
        for opt, saved in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        saved_schedulers = state.get("schedulers", [])
        if len(saved_schedulers) != len(self.schedulers):
            raise ValueError(
                f"{self.name} stage {self.stage}: the saved state has {len(saved_schedulers)} "
                f"schedulers, this stage {len(self.schedulers)} (was the scheduler changed?)"
            )
        for sched, saved in zip(self.schedulers, saved_schedulers, strict=True):
            sched.load_state_dict(saved)
        self.step = int(state["step"])

    # --------------------------------------------------------------------- training

    def _problem(self, batch: MRIBatch, maps: torch.Tensor | None) -> Problem:
        """The batch's problem: prepared by the prologue on stage 0, else with the sent maps."""
        problem = Problem.from_batch(batch)
        if self.is_first:
            return self.net.prepare(problem)
        return problem if maps is None else problem.with_maps(maps)

    def _train_batch(
        self, inputs: tuple[torch.Tensor, torch.Tensor | None] | None, batch: MRIBatch
    ) -> tuple[torch.Tensor, Problem, dict]:
        """Train the owned modules on a received ``(state, maps)`` (``None`` on stage 0).

        Returns the detached output, the detached problem (its maps go downstream when the net
        has a prologue, which module 0 owns and trains) and the losses.
        ``metrics["nonfinite"]`` names the first module whose loss was not finite (the later
        modules are skipped); its replicas learn of it in the gradient all-reduce.
        """
        state, maps = inputs if inputs is not None else (None, None)
        with self._autocast(batch):
            problem = self._problem(batch, maps)
            if state is None:
                state = self.net.init_state(problem)
        metrics: dict[str, Any] = {}
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        for m, module in zip(self.module_ids, self.modules, strict=True):
            with self._autocast(batch):
                out = module(state, problem)
                image = self.net.image(out, problem)
            loss_fn = self.loss_fn if m == self.n_modules - 1 else self.module_loss
            loss = loss_fn(image, batch)
            value = float(loss.detach())
            metrics[f"loss/module_{m}"] = value
            if not math.isfinite(value):
                metrics["nonfinite"] = m
                break
            loss.backward()
            problem = problem.detach()  # the prologue's graph ends with module 0
            state = out.detach()
        return state, problem, metrics

    def _send(self, state: torch.Tensor, problem: Problem, tag: int) -> None:
        self.link.send_state(state, tag)
        if self.net.prologue is not None:  # later stages need the learned maps
            self.link.send_state(problem.maps.detach(), tag)

    def _recv(self, tag: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        state = self.link.recv_state(tag)
        maps = self.link.recv_state(tag) if self.net.prologue is not None else None
        return state, maps

    def _optimizer_step(self, metrics: dict[str, Any]) -> None:
        bad = "nonfinite" in metrics
        if self.link.average_gradients(self._owned_parameters(), bad, self.step) or bad:
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            where = f"module {metrics['nonfinite']}" if bad else "another replica of this stage"
            raise NonFiniteLossError(
                f"{self.name} stage {self.stage} replica {self.replica}: non-finite loss in "
                f"{where} at step {self.step}; no parameter of this stage was updated"
            )
        if self.grad_clip is not None:
            for m, opt in zip(self.module_ids, self.optimizers, strict=True):
                params = [p for group in opt.param_groups for p in group["params"]]
                norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
                if not math.isfinite(norm):
                    raise NonFiniteLossError(
                        f"{self.name} stage {self.stage}: non-finite gradient norm in module {m} "
                        f"at step {self.step}"
                    )
        for opt in self.optimizers:
            opt.step()
        for sched in self.schedulers:
            sched.step()

    def _autocast(self, batch: MRIBatch):
        device_type = batch.kspace.device.type
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.amp)

    def train(
        self,
        steps: int,
        batch_for_step: BatchSource,
        staleness: int = 1,
        on_step: Callable[[int, dict], None] | None = None,
    ) -> list[dict]:
        """Train this stage on batches ``self.step .. self.step + steps - 1``.

        ``batch_for_step(t)`` must return this replica's shard of batch ``t``, the same on every
        stage (seeded, on this rank's device). ``on_step(done, metrics)`` runs after each optimizer
        step, before the acknowledgement. Returns one metrics dict per step (``"step"``,
        ``"loss/module_<m>"`` for the owned modules). Raises :class:`PipelinePeerError` when a
        neighbour dies or hangs.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative int, got {steps!r}")
        if isinstance(staleness, bool) or not isinstance(staleness, int) or staleness < 0:
            raise ValueError(f"staleness must be a non-negative int, got {staleness!r}")
        if not callable(batch_for_step):
            raise TypeError("batch_for_step must be callable: step -> MRIBatch")
        self.net.train()
        start, history = self.step, []
        acked = start  # steps acknowledged by the downstream stage
        for t in range(start, start + steps):
            while not self.is_last and acked < t - staleness:
                self.link.await_ack(acked)
                acked += 1
            batch = batch_for_step(t)
            if not isinstance(batch, MRIBatch):
                raise TypeError(f"batch_for_step({t}) returned {type(batch).__name__}")
            self.link.device = batch.kspace.device
            inputs = None if self.is_first else self._recv(t)
            out, problem, metrics = self._train_batch(inputs, batch)
            if not self.is_last and "nonfinite" not in metrics:
                self._send(out, problem, t)
            self._optimizer_step(metrics)
            self.step += 1
            if on_step is not None:
                on_step(self.step, metrics)
            if not self.is_first:
                self.link.send_ack(t)
            history.append({"step": t, **metrics})
        while not self.is_last and acked < start + steps:
            self.link.await_ack(acked)
            acked += 1
        self.link.drain(self.step)
        return history

    @torch.no_grad()
    def forward_chain(self, batch: MRIBatch, index: int) -> torch.Tensor | None:
        """Run this stage's modules on validation batch ``index`` of the whole chain.

        Every stage calls it with the same batches in the same order (between training steps);
        states travel with header step ``-1 - index``. Returns the image ``(B, *D)`` on the last
        stage, ``None`` elsewhere. Parameters are not changed.
        """
        self.link.device = batch.kspace.device
        tag = -1 - int(index)
        was_training = self.net.training
        self.net.eval()
        try:
            state, maps = (None, None) if self.is_first else self._recv(tag)
            with self._autocast(batch):
                problem = self._problem(batch, maps)
                state = self.net.init_state(problem) if state is None else state
                for module in self.modules:
                    state = module(state, problem)
            if not self.is_last:
                self._send(state, problem, tag)
                return None
            return self.net.image(state, problem)
        finally:
            self.net.train(was_training)

    def __repr__(self) -> str:
        return (
            f"PipelineGreedy(stage={self.stage}/{self.layout.stages}, replica={self.replica}/"
            f"{self.layout.replicas}, modules={self.module_ids}, step={self.step})"
        )

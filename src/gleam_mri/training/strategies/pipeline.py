"""Pipelined greedy (GLEAM) training across processes: stages x data-parallel replicas.

No gradient crosses a module boundary under greedy training, so module ``m`` can train on batch
``t`` while module ``m + 1`` trains on batch ``t - 1``. The ranks of the default process group
(started with ``torchrun``: gloo on CPU, NCCL on GPU) form ``stages x replicas``
(:class:`~gleam_mri.training.strategies.stage_link.PipelineLayout`, stage-major). Stage ``s``
owns a contiguous, balanced group of the ``M`` modules of ``net.split(M)`` (``M >= stages``) and
one optimizer per module: :class:`PipelineGreedy` is a :class:`Greedy` strategy that owns a subset
of the modules; its replicas train on different shards of each batch and average their
gradients before every step. Without an initialised process group it is one stage of one
process, i.e. :class:`Greedy` in simultaneous mode.

Design: every rank builds its batch itself from a shared, seeded, step-indexed batch source
(replica ``i`` gets shard ``i`` of the step's batch); only the *detached* state crosses stages
(``isend`` / ``irecv``, :class:`StageLink`). Rebuilding the batch locally costs a file read and a
mask draw; sending k-space, maps, mask and target instead would multiply the traffic by about
``2 x coils`` (``benchmarks/pipeline_throughput.py`` measures both). A network with a prologue
(VarNet's learned coil maps, trained with module 0) sends the detached prepared maps with each
state.

Flow control: after training on batch ``t`` (and after the run's hooks for that step: logging,
validation, checkpoints) stage ``s`` sends an acknowledgement ``t`` upstream; it is sent when the
next step starts or in :meth:`finish`. Stage ``s`` starts batch ``t`` only once batch
``t - 1 - staleness`` was acknowledged downstream, so at most ``staleness + 1`` batches are in
flight between neighbours. ``staleness=0`` is the synchronous schedule; the default ``1`` lets
stage ``s`` work on batch ``t + 1`` while stage ``s + 1`` trains on ``t``. Every state is computed
before the optimizer step of its batch, so the parameters after ``n`` steps equal those of
single-process simultaneous :class:`Greedy` on the same data order, whatever the staleness and the
number of replicas (equal shards, mean losses).

Validation: :meth:`reconstruct` runs the whole chain on a batch, through the same links (headers
tagged with negative steps); every stage must call it with the same batches in the same order.

Faults: every wait has ``timeout`` seconds; a peer that died (connection closed) or hangs raises
:class:`PipelinePeerError` naming the peer rank. A non-finite loss on any replica stops all the
stage's replicas (:class:`NonFiniteLossError`) before any parameter of that batch changes.

The run driver trains a stage like any strategy (``gleam train`` under ``torchrun
--nproc-per-node S*R``; :func:`gleam_mri.training.loop.fit` with ``strategy.name: pipeline``):
every rank calls ``train_step`` with its shard of the same seeded batch of each step, then
:meth:`finish`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from gleam_mri.config import options_from
from gleam_mri.data.batch import MRIBatch
from gleam_mri.loss_names import LossName
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.schema import ConfigError, at_least
from gleam_mri.training.distributed import process_group
from gleam_mri.training.errors import NonFiniteLossError
from gleam_mri.training.losses import LossFn, build_loss
from gleam_mri.training.run import Run
from gleam_mri.training.stage_checkpoints import StageCheckpoints
from gleam_mri.training.strategies.base import StrategyOptions
from gleam_mri.training.strategies.greedy import Greedy, check_modules
from gleam_mri.training.strategies.stage_link import (
    PipelineLayout,
    PipelinePeerError,
    StageLink,
    new_stage_groups,
)

if TYPE_CHECKING:
    from gleam_mri.config import Config

__all__ = ["PipelineGreedy", "PipelineLayout", "PipelineOptions", "PipelinePeerError"]


@dataclass
class PipelineOptions(StrategyOptions):
    """``strategy.modules`` (>= stages; ``None``: one per iteration), ``module_loss``,
    ``staleness`` (batches a stage may run ahead of the next one, minus one), ``replicas``
    (data-parallel copies per stage; ``world = stages x replicas``) and ``timeout`` (seconds
    before a dead or hung peer stops every rank; it must also cover one validation pass)."""

    modules: int | None = field(default=None, metadata=at_least(1))
    module_loss: LossName | None = None
    staleness: int = field(default=1, metadata=at_least(0))
    replicas: int = field(default=1, metadata=at_least(1))
    timeout: float = field(default=60.0, metadata=at_least(0, strict=True))

    def check(self, cfg: Config) -> None:
        check_modules(self.modules, cfg, self.module_loss)
        used = {"keep": cfg.train.keep == "best", "patience": cfg.train.patience > 0}
        used["average"] = cfg.train.average > 0
        if any(used.values()):
            raise ConfigError(
                "keeping the best or averaged weights and stopping early are not supported by "
                "the pipeline (only its last stage sees the validation loss)",
                "train." + next(key for key, on in used.items() if on),
            )
        if cfg.data.batch_size % self.replicas:
            raise ConfigError(
                f"data.batch_size={cfg.data.batch_size} must be a multiple of the "
                f"{self.replicas} replicas (each replica trains on an equal shard)",
                "strategy.replicas",
            )

    def strategy_kwargs(self, cfg: Config) -> dict[str, Any]:
        kwargs = {k: getattr(self, k) for k in ("modules", "staleness", "replicas", "timeout")}
        if self.module_loss:
            kwargs["module_loss"] = build_loss(self.module_loss)
        return kwargs


class PipelineGreedy(Greedy):
    """One rank (a replica of a stage) of pipelined greedy training.

    Args:
        net: the unrolled network, identical (same seed) on every rank.
        loss_fn: ``loss_fn(image (B, *D) complex, batch) -> scalar`` (last module).
        modules: number of modules ``M`` (``None``: one per iteration), ``M >= stages``.
        module_loss: loss of the intermediate modules (default ``loss_fn``).
        staleness: batches in flight between neighbouring stages, minus one.
        timeout: seconds any send / receive / all-reduce may wait before
            :class:`PipelinePeerError`.
        replicas: data-parallel replicas per stage (``world = stages x replicas``).
        rank, world_size: default: those of the initialised default process group, else one
            process (rank 0 of 1).
        **kwargs: the optimizer options of :class:`~gleam_mri.training.strategies.base.Strategy`
            (one optimizer and scheduler per owned module; ``amp`` runs the modules under bf16
            autocast, states are sent as computed).
    """

    name = "pipeline"
    Options = PipelineOptions
    costs = None  # one process per stage: not planned (each stage holds greedy's modules)
    distributed = True

    def __init__(
        self,
        net: UnrolledNet,
        loss_fn: LossFn,
        *,
        modules: int | None = None,
        module_loss: LossFn | None = None,
        staleness: int = 1,
        timeout: float = 60.0,
        replicas: int = 1,
        rank: int | None = None,
        world_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        self.staleness = self._check_staleness(staleness)
        if rank is None or world_size is None:
            alone = not dist.is_initialized()
            rank = 0 if alone else dist.get_rank()
            world_size = 1 if alone else dist.get_world_size()
        self.layout = PipelineLayout.from_world(int(world_size), int(replicas))
        self.stage, self.replica = self.layout.position(int(rank))
        self.rank, self.world_size = int(rank), int(world_size)
        group = None
        if self.layout.replicas > 1:
            if not dist.is_initialized():
                raise RuntimeError(f"{self.name}: replicas need an initialised process group")
            group = new_stage_groups(self.layout)[self.stage]
        self.link = StageLink(self.layout, self.rank, timeout, group, self.name)
        self.timeout = float(timeout)
        super().__init__(net, loss_fn, modules=modules, module_loss=module_loss, **kwargs)
        self._acked = self.step  # steps acknowledged by the downstream stage
        self._ack_due: int | None = None  # our step whose acknowledgement is still to be sent
        self._chain_batches = 0  # validation batches run through the chain

    def owned_module_ids(self, n_modules: int) -> list[int]:
        if n_modules < self.layout.stages:
            raise ValueError(
                f"{self.name}: {n_modules} modules cannot feed {self.layout.stages} stages "
                "(need modules >= stages = world size / replicas)"
            )
        groups = np.array_split(np.arange(n_modules), self.layout.stages)
        return [int(m) for m in groups[self.stage]]

    @staticmethod
    def _check_staleness(staleness: int) -> int:
        if isinstance(staleness, bool) or not isinstance(staleness, int) or staleness < 0:
            raise ValueError(f"staleness must be a non-negative int, got {staleness!r}")
        return staleness

    # --------------------------------------------------------------------- the run around it

    @classmethod
    def session(cls, cfg: Config) -> AbstractContextManager[torch.device]:
        """The ``torchrun`` worker's process group (the device: ``cuda:LOCAL_RANK`` or CPU)."""
        return process_group(
            cfg.train.device, options_from(cls.Options, cfg.strategy.options).timeout
        )

    def checkpoint_store(self, run: Run) -> StageCheckpoints:
        """Per-stage files, merged into ``last.pt`` at the end."""
        return StageCheckpoints(run, self)

    # --------------------------------------------------------------------- introspection

    @property
    def is_first(self) -> bool:
        return self.stage == 0

    @property
    def is_last(self) -> bool:
        return self.stage == self.layout.stages - 1

    @property
    def reports(self) -> bool:
        return self.is_last and self.replica == 0

    @property
    def produces_image(self) -> bool:
        return self.is_last

    @property
    def data_shard(self) -> tuple[int, int]:
        return self.replica, self.layout.replicas

    @property
    def log_name(self) -> str | None:
        if self.replica != 0:
            return None
        return "metrics.jsonl" if self.is_last else f"metrics_stage{self.stage}.jsonl"

    def parameter_names(self) -> list[str]:
        """Names (as in ``net.named_parameters()``) of the parameters this stage trains."""
        owned = {id(p) for p in self.optim.parameters()}
        return [name for name, p in self.net.named_parameters() if id(p) in owned]

    def state_dict(self) -> dict[str, Any]:
        """This stage's parameters, optimizers and step (one file per stage; replicas agree)."""
        params = dict(self.net.named_parameters())
        return {
            **super().state_dict(),
            "stage": self.stage,
            "stages": self.layout.stages,
            "n_modules": self.n_modules,
            "modules": self.module_ids,
            "params": {n: params[n].detach().clone() for n in self.parameter_names()},
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
        super().load_state_dict(state)
        self._acked, self._ack_due = self.step, None

    # --------------------------------------------------------------------- links

    def _send(self, state: torch.Tensor, problem: Problem, tag: int) -> None:
        self.link.send_state(state, tag)
        if self.net.prologue is not None:  # later stages need the learned maps
            self.link.send_state(problem.maps.detach(), tag)

    def _receive(self, batch: MRIBatch, tag: int) -> tuple[Problem, torch.Tensor]:
        """The problem and initial state of this stage: stage 0 starts the chain, the others
        receive the state (and the learned maps) from upstream."""
        self.link.device = batch.kspace.device
        if self.is_first:
            return self.start(batch)
        state = self.link.recv_state(tag)
        maps = self.link.recv_state(tag) if self.net.prologue is not None else None
        with self.autocast(batch):
            problem = self.problem(batch)
        return (problem if maps is None else problem.with_maps(maps)), state

    def _acknowledge(self) -> None:
        """Send the acknowledgement of our last step upstream (after the run's hooks ran)."""
        if self._ack_due is not None and not self.is_first:
            self.link.send_ack(self._ack_due)
        self._ack_due = None

    def _await_downstream(self, step: int) -> None:
        """Wait until the downstream stage acknowledged every step before ``step``."""
        while not self.is_last and self._acked < step:
            self.link.await_ack(self._acked)
            self._acked += 1

    # --------------------------------------------------------------------- Strategy hooks

    def forward_backward(self, batch: MRIBatch) -> dict[str, float]:
        t = self.step
        self._acknowledge()
        self._await_downstream(t - self.staleness)
        problem, state = self._receive(batch, t)
        out, problem, metrics = self.train_modules(state, problem, batch)
        if not self.is_last:  # sent before this batch's update: the next stage need not wait
            self._send(out, problem, t)
        return metrics

    def reduce_gradients(self, failure: NonFiniteLossError | None) -> None:
        bad = failure is not None
        if self.link.average_gradients(self.optim.parameters(), bad, self.step) or bad:
            self.zero_grad()
            raise failure or NonFiniteLossError(
                f"{self.name} stage {self.stage} replica {self.replica}: non-finite loss in "
                f"another replica of this stage at step {self.step + 1}; no parameter of this "
                "stage was updated"
            )

    def after_step(self, stepped: list[int]) -> None:
        super().after_step(stepped)
        self._ack_due = self.step - 1

    def finish(self) -> None:
        """Acknowledge the last step, wait for the downstream acknowledgements, drain sends."""
        self._acknowledge()
        self._await_downstream(self.step)
        self.link.drain(self.step)

    @torch.no_grad()
    def reconstruct(self, batch: MRIBatch) -> torch.Tensor | None:
        """Run this stage's modules on the next validation batch of the whole chain.

        Every stage calls it with the same batches in the same order (between training steps);
        states travel with header step ``-1 - index``. Returns the image ``(B, *D)`` on the last
        stage, ``None`` elsewhere. Parameters are not changed.
        """
        tag = -1 - self._chain_batches
        self._chain_batches += 1
        was_training = self.net.training
        self.net.eval()
        try:
            problem, state = self._receive(batch, tag)
            with self.autocast(batch):
                for module in self.modules:
                    state = module(state, problem)
            if not self.is_last:
                self._send(state, problem, tag)
                return None
            with self.autocast(batch):
                return self.net.image(state, problem)
        finally:
            self.net.train(was_training)

    def __repr__(self) -> str:
        return (
            f"PipelineGreedy(stage={self.stage}/{self.layout.stages}, replica={self.replica}/"
            f"{self.layout.replicas}, modules={self.module_ids}, step={self.step})"
        )

"""Pipelined greedy (GLEAM) training across processes: one pipeline *stage* per rank.

No gradient crosses a module boundary under greedy training, so module ``m`` can train on batch
``t`` while module ``m + 1`` trains on batch ``t - 1``. Each rank ``r`` of the default process
group (started with ``torchrun``: gloo on CPU, NCCL on GPU) owns a contiguous, balanced group of
the ``M`` modules of ``net.split(M)`` (``M >= S`` ranks) and one optimizer per module (as
:class:`~gleam_mri.training.strategies.greedy.Greedy`).

Design: every rank builds the same batch itself from a shared, seeded batch source
``batch_for_step(step) -> MRIBatch``; only the *detached* state tensor (with a small header: step,
dtype, shape) crosses ranks, by ``torch.distributed`` point-to-point ``isend`` / ``irecv``. The
:class:`Problem` is rebuilt locally from the batch. A network with a prologue (e.g. learned coil
maps) would need the prepared problem sent as well: not supported (``NotImplementedError``).

Flow control: after training on batch ``t`` stage ``r`` sends an acknowledgement ``t`` upstream.
Stage ``r`` starts batch ``t`` only once batch ``t - 1 - staleness`` was acknowledged downstream,
so at most ``staleness + 1`` batches are in flight between neighbours. ``staleness=0`` is the
synchronous schedule (wait for the downstream stage before the next batch); the default ``1``
lets stage ``r`` work on batch ``t + 1`` while stage ``r + 1`` trains on ``t``. Every state is
computed before the optimizer step of its batch, so the parameters after ``n`` steps equal those
of single-process simultaneous :class:`Greedy` on the same data order, whatever the staleness.

Faults: every wait has ``timeout`` seconds; a peer that died (connection closed) or hangs raises
:class:`PipelinePeerError` naming the peer rank. Pass the same timeout to
``dist.init_process_group(timeout=...)`` (or a longer one, for uneven start-up). Usage, under
``torchrun --nproc-per-node S script.py``::

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # "nccl" on GPUs
    stage = PipelineGreedy(build_net(seed=0), loss_fn, modules=M, timeout=60)
    stage.train(steps, batch_for_step, staleness=1)  # same seeded batch_for_step on every rank
    torch.save(stage.state_dict(), f"stage{stage.rank}.pt")
    dist.destroy_process_group()

Not covered: a prologue, AMP, schedulers, data-parallel replicas of a stage, resuming from the
per-stage state, NCCL (written to work the same way, untested here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from gleam_mri.data.batch import MRIBatch
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.training.losses import LossFn
from gleam_mri.training.strategies.base import NonFiniteLossError, build_optimizer

BatchSource = Callable[[int], MRIBatch]
MAX_NDIM = 8
DTYPES = (
    torch.complex64,
    torch.complex128,
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
)
HEADER_LEN = 3 + MAX_NDIM  # step, dtype code, ndim, shape (padded)


class PipelinePeerError(RuntimeError):
    """A neighbouring stage died, hung past the timeout or sent an unexpected message."""


class PipelineGreedy:
    """One stage (this rank's modules) of pipelined greedy training.

    Args:
        net: the unrolled network, identical (same seed) on every rank; no prologue.
        loss_fn: ``loss_fn(image (B, *D) complex, batch) -> scalar`` (last module).
        modules: number of modules ``M`` (``None``: one per iteration), ``M >= world size``.
        module_loss: loss of the intermediate modules (default ``loss_fn``).
        optimizer, lr, optimizer_kwargs: one ``torch.optim.<optimizer>`` per owned module.
        grad_clip: clip each module's gradient norm to this value.
        timeout: seconds any send / receive may wait before :class:`PipelinePeerError`.
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
        timeout: float = 60.0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if not isinstance(net, UnrolledNet):
            raise TypeError(f"{self.name}: net must be an UnrolledNet, got {type(net).__name__}")
        if net.prologue is not None:
            raise NotImplementedError(
                f"{self.name}: networks with a prologue (e.g. learned coil maps) are not "
                "supported: the prepared problem would have to be sent between stages"
            )
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
        self.rank = dist.get_rank() if rank is None else int(rank)
        self.world_size = dist.get_world_size() if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside a world of size {self.world_size}")
        n_modules = len(net) if modules is None else int(modules)
        if n_modules < self.world_size:
            raise ValueError(
                f"{self.name}: {n_modules} modules cannot feed {self.world_size} stages "
                "(need modules >= world size)"
            )
        self.net = net
        self.loss_fn = loss_fn
        self.module_loss = module_loss if module_loss is not None else loss_fn
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.timeout = float(timeout)
        all_modules = net.split(n_modules)
        self.n_modules = n_modules
        groups = np.array_split(np.arange(n_modules), self.world_size)
        self.module_ids: list[int] = [int(m) for m in groups[self.rank]]
        self.modules: list[nn.Module] = [all_modules[m] for m in self.module_ids]
        empty = [m for m in self.module_ids if not list(all_modules[m].parameters())]
        if empty:
            raise ValueError(f"{self.name}: modules {empty} have no parameters; use fewer modules")
        self.optimizers = [
            build_optimizer(optimizer, mod.parameters(), lr, optimizer_kwargs)
            for mod in self.modules
        ]
        self.step = 0  # completed train steps of this stage
        self._pending: list[tuple[Any, torch.Tensor, int, str]] = []  # work, buffer, peer, what
        self._device = torch.device("cpu")

    # --------------------------------------------------------------------- introspection

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def is_last(self) -> bool:
        return self.rank == self.world_size - 1

    def parameter_names(self) -> list[str]:
        """Names (as in ``net.named_parameters()``) of the parameters this stage trains."""
        owned = {id(p) for mod in self.modules for p in mod.parameters()}
        return [name for name, p in self.net.named_parameters() if id(p) in owned]

    def state_dict(self) -> dict[str, Any]:
        """This stage's parameters and optimizers (save one file per rank)."""
        params = dict(self.net.named_parameters())
        return {
            "strategy": self.name,
            "rank": self.rank,
            "modules": self.module_ids,
            "step": self.step,
            "params": {n: params[n].detach().clone() for n in self.parameter_names()},
            "optimizers": [opt.state_dict() for opt in self.optimizers],
        }

    # --------------------------------------------------------------------- communication

    def _fail(self, what: str, peer: int, step: int, err: BaseException | None) -> None:
        cause = f": {err}" if err is not None else ""
        raise PipelinePeerError(
            f"{self.name} stage {self.rank}: {what} rank {peer} failed or timed out after "
            f"{self.timeout:g} s at step {step} (peer rank {peer} dead or hung?){cause}"
        ) from err

    def _wait(self, work: Any, what: str, peer: int, step: int) -> None:
        try:
            done = work.wait(timedelta(seconds=self.timeout))
        except Exception as err:
            self._fail(what, peer, step, err)
        if done is False:
            self._fail(what, peer, step, None)

    def _isend(self, tensor: torch.Tensor, peer: int, step: int, what: str) -> None:
        try:
            work = dist.isend(tensor, peer)
        except Exception as err:
            self._fail(f"sending {what} to", peer, step, err)
        self._pending.append((work, tensor, peer, f"sending {what} to"))
        self._pending = [item for item in self._pending if not item[0].is_completed()]

    def _recv(self, tensor: torch.Tensor, peer: int, step: int, what: str) -> torch.Tensor:
        try:
            work = dist.irecv(tensor, peer)
        except Exception as err:
            self._fail(f"receiving {what} from", peer, step, err)
        self._wait(work, f"receiving {what} from", peer, step)
        return tensor

    def _send_state(self, state: torch.Tensor, step: int) -> None:
        if state.dtype not in DTYPES or state.ndim > MAX_NDIM:
            raise TypeError(f"cannot send a state of dtype {state.dtype} and rank {state.ndim}")
        header = torch.zeros(HEADER_LEN, dtype=torch.int64, device=state.device)
        values = [step, DTYPES.index(state.dtype), state.ndim, *state.shape]
        header[: len(values)] = torch.tensor(values, dtype=torch.int64)
        payload = state.detach().contiguous()
        payload = torch.view_as_real(payload) if payload.is_complex() else payload
        self._isend(header, self.rank + 1, step, "the state header")
        self._isend(payload.contiguous(), self.rank + 1, step, "the state")

    def _recv_state(self, step: int, device: torch.device) -> torch.Tensor:
        peer = self.rank - 1
        header = torch.empty(HEADER_LEN, dtype=torch.int64, device=device)
        values = self._recv(header, peer, step, "the state header").tolist()
        got, code, ndim = values[:3]
        if got != step or not 0 <= code < len(DTYPES) or not 0 <= ndim <= MAX_NDIM:
            raise PipelinePeerError(
                f"{self.name} stage {self.rank}: rank {peer} sent header {values} while step "
                f"{step} was expected (stages out of order or different batch sources?)"
            )
        dtype, shape = DTYPES[code], values[3 : 3 + ndim]
        if dtype.is_complex:
            real = torch.empty(*shape, 2, dtype=dtype.to_real(), device=device)
            return torch.view_as_complex(self._recv(real, peer, step, "the state"))
        return self._recv(torch.empty(*shape, dtype=dtype, device=device), peer, step, "the state")

    def _await_ack(self, step: int) -> None:
        ack = torch.empty(1, dtype=torch.int64, device=self._device)
        got = int(self._recv(ack, self.rank + 1, step, "the acknowledgement").item())
        if got != step:
            raise PipelinePeerError(
                f"{self.name} stage {self.rank}: rank {self.rank + 1} acknowledged step {got}, "
                f"expected {step}"
            )

    def _drain(self) -> None:
        for work, _, peer, what in self._pending:
            self._wait(work, what, peer, self.step)
        self._pending = []

    # --------------------------------------------------------------------- training

    def _train_batch(self, state: torch.Tensor, batch: MRIBatch) -> tuple[torch.Tensor, dict]:
        """Train the owned modules on ``state`` (detached); returns the output and the losses."""
        problem = Problem.from_batch(batch)
        metrics: dict[str, float] = {}
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        for m, module in zip(self.module_ids, self.modules, strict=True):
            out = module(state, problem)
            loss_fn = self.loss_fn if m == self.n_modules - 1 else self.module_loss
            loss = loss_fn(self.net.image(out, problem), batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                raise NonFiniteLossError(
                    f"{self.name} stage {self.rank}: non-finite loss {value} in module {m} at "
                    f"step {self.step}; no parameter of this stage was updated for this batch"
                )
            loss.backward()
            metrics[f"loss/module_{m}"] = value
            state = out.detach()
        return state, metrics

    def _optimizer_step(self) -> None:
        if self.grad_clip is not None:
            for m, opt in zip(self.module_ids, self.optimizers, strict=True):
                params = [p for group in opt.param_groups for p in group["params"]]
                norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
                if not math.isfinite(norm):
                    raise NonFiniteLossError(
                        f"{self.name} stage {self.rank}: non-finite gradient norm in module {m} "
                        f"at step {self.step}"
                    )
        for opt in self.optimizers:
            opt.step()

    def train(self, steps: int, batch_for_step: BatchSource, staleness: int = 1) -> list[dict]:
        """Train this stage on batches ``self.step .. self.step + steps - 1``.

        ``batch_for_step(t)`` must return the same batch on every rank (seeded, on this rank's
        device). Returns one metrics dict per step (``"step"``, ``"loss/module_<m>"`` for the
        owned modules). Raises :class:`PipelinePeerError` when a neighbour dies or hangs.
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
                self._await_ack(acked)
                acked += 1
            batch = batch_for_step(t)
            if not isinstance(batch, MRIBatch):
                raise TypeError(f"batch_for_step({t}) returned {type(batch).__name__}")
            self._device = batch.kspace.device
            if self.is_first:
                state = self.net.init_state(self.net.prepare(Problem.from_batch(batch)))
            else:
                state = self._recv_state(t, self._device)
            out, metrics = self._train_batch(state, batch)
            if not self.is_last:
                self._send_state(out, t)
            self._optimizer_step()
            if not self.is_first:
                ack = torch.tensor([t], dtype=torch.int64, device=self._device)
                self._isend(ack, self.rank - 1, t, "the acknowledgement")
            self.step += 1
            history.append({"step": t, **metrics})
        while not self.is_last and acked < start + steps:
            self._await_ack(acked)
            acked += 1
        self._drain()
        return history

    def __repr__(self) -> str:
        return (
            f"PipelineGreedy(rank={self.rank}/{self.world_size}, modules={self.module_ids}, "
            f"step={self.step})"
        )

"""Process layout and communication of pipelined GLEAM: stages x replicas over torch.distributed.

Layout (:class:`PipelineLayout`): ``world = stages x replicas`` ranks, stage-major::

    rank = stage * replicas + replica        (stage 0 .. S-1, replica 0 .. R-1)

so the ``R`` replicas of a stage are consecutive ranks. ``torchrun`` numbers ranks node by node,
so with ``R`` a multiple of the GPUs per node a stage's replicas share a node: the per-step
gradient all-reduce (the parameters' size) stays inside the node, and only the pipeline's
activations (one detached state per batch, usually much smaller) cross nodes. Replica ``i`` of
stage ``s`` receives from replica ``i`` of stage ``s - 1`` and sends to replica ``i`` of stage
``s + 1``: the ``R`` replica chains are independent pipelines that meet only in their stage's
all-reduce. Process groups: the default group (point-to-point, rendezvous) and, when ``R > 1``,
one group per stage holding its replicas (``dist.new_group``, created by every rank in the same
order, as PyTorch requires).

:class:`StageLink` is one rank's side of that layout: the detached state goes downstream as a
small int64 header (step, dtype code, shape) and the payload (complex as real pairs); an
acknowledgement (the step) goes upstream; gradients are averaged over the stage's replicas with
one flattened all-reduce that also carries a "non-finite loss" flag, so replicas stop together.
Every wait has ``timeout`` seconds; a dead or hung peer raises :class:`PipelinePeerError`
naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from gleam_mri.training.errors import TrainingStopped

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


class PipelinePeerError(TrainingStopped):
    """A neighbouring stage or replica died, hung past the timeout or sent something unexpected."""


@dataclass(frozen=True)
class PipelineLayout:
    """``stages x replicas`` ranks, stage-major (``rank = stage * replicas + replica``)."""

    stages: int
    replicas: int = 1

    def __post_init__(self) -> None:
        if self.stages < 1 or self.replicas < 1:
            raise ValueError(f"need >= 1 stage and replica, got {self.stages} x {self.replicas}")

    @classmethod
    def from_world(cls, world_size: int, replicas: int = 1) -> PipelineLayout:
        """The layout of ``world_size`` ranks with ``replicas`` replicas per stage."""
        if replicas < 1 or world_size % replicas:
            raise ValueError(
                f"world size {world_size} is not a multiple of replicas={replicas} "
                "(world = stages x replicas)"
            )
        return cls(world_size // replicas, replicas)

    @property
    def world_size(self) -> int:
        return self.stages * self.replicas

    def rank(self, stage: int, replica: int) -> int:
        """Global rank of ``replica`` of ``stage``."""
        return stage * self.replicas + replica

    def position(self, rank: int) -> tuple[int, int]:
        """``(stage, replica)`` of a global rank."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} outside a world of size {self.world_size}")
        return divmod(rank, self.replicas)

    def stage_ranks(self, stage: int) -> list[int]:
        """The ranks of ``stage``'s replicas (its all-reduce group)."""
        return [self.rank(stage, r) for r in range(self.replicas)]


def new_stage_groups(layout: PipelineLayout) -> list[Any]:
    """One process group per stage (its replicas); every rank must call this, in the same order."""
    return [dist.new_group(layout.stage_ranks(s)) for s in range(layout.stages)]


class StageLink:
    """Point-to-point and replica communication of one rank, every wait bounded by ``timeout``."""

    def __init__(
        self,
        layout: PipelineLayout,
        rank: int,
        timeout: float,
        stage_group: Any = None,
        name: str = "pipeline-greedy",
    ) -> None:
        self.layout = layout
        self.rank = rank
        self.stage, self.replica = layout.position(rank)
        self.timeout = float(timeout)
        self.stage_group = stage_group
        self.name = name
        self.device = torch.device("cpu")
        self._pending: list[tuple[Any, torch.Tensor, int, str]] = []  # work, buffer, peer, what

    @property
    def upstream(self) -> int:
        return self.layout.rank(self.stage - 1, self.replica)

    @property
    def downstream(self) -> int:
        return self.layout.rank(self.stage + 1, self.replica)

    def _where(self) -> str:
        return f"{self.name} stage {self.stage} replica {self.replica} (rank {self.rank})"

    def fail(self, what: str, peer: int | str, step: int, err: BaseException | None) -> None:
        """Raise :class:`PipelinePeerError` for a failed or timed-out exchange with ``peer``."""
        cause = f": {err}" if err is not None else ""
        raise PipelinePeerError(
            f"{self._where()}: {what} rank {peer} failed or timed out after {self.timeout:g} s "
            f"at step {step} (peer rank {peer} dead or hung?){cause}"
        ) from err

    def wait(self, work: Any, what: str, peer: int | str, step: int) -> None:
        try:
            done = work.wait(timedelta(seconds=self.timeout))
        except Exception as err:
            self.fail(what, peer, step, err)
        if done is False:
            self.fail(what, peer, step, None)

    def _isend(self, tensor: torch.Tensor, peer: int, step: int, what: str) -> None:
        try:
            work = dist.isend(tensor, peer)
        except Exception as err:
            self.fail(f"sending {what} to", peer, step, err)
        self._pending.append((work, tensor, peer, f"sending {what} to"))
        self._pending = [item for item in self._pending if not item[0].is_completed()]

    def _recv(self, tensor: torch.Tensor, peer: int, step: int, what: str) -> torch.Tensor:
        try:
            work = dist.irecv(tensor, peer)
        except Exception as err:
            self.fail(f"receiving {what} from", peer, step, err)
        self.wait(work, f"receiving {what} from", peer, step)
        return tensor

    def send_state(self, state: torch.Tensor, step: int) -> None:
        """Send a detached state ``(B, ...)`` downstream, tagged with ``step`` (asynchronous)."""
        if state.dtype not in DTYPES or state.ndim > MAX_NDIM:
            raise TypeError(f"cannot send a state of dtype {state.dtype} and rank {state.ndim}")
        header = torch.zeros(HEADER_LEN, dtype=torch.int64, device=state.device)
        values = [step, DTYPES.index(state.dtype), state.ndim, *state.shape]
        header[: len(values)] = torch.tensor(values, dtype=torch.int64)
        payload = state.detach().contiguous()
        payload = torch.view_as_real(payload) if payload.is_complex() else payload
        self._isend(header, self.downstream, step, "the state header")
        self._isend(payload.contiguous(), self.downstream, step, "the state")

    def recv_state(self, step: int) -> torch.Tensor:
        """Receive the state of ``step`` from upstream; refuses a state of another step."""
        peer = self.upstream
        header = torch.empty(HEADER_LEN, dtype=torch.int64, device=self.device)
        values = self._recv(header, peer, step, "the state header").tolist()
        got, code, ndim = values[:3]
        if got != step or not 0 <= code < len(DTYPES) or not 0 <= ndim <= MAX_NDIM:
            raise PipelinePeerError(
                f"{self._where()}: rank {peer} sent header {values} while step {step} was "
                "expected (stages out of order or different batch sources?)"
            )
        dtype, shape = DTYPES[code], values[3 : 3 + ndim]
        if dtype.is_complex:
            real = torch.empty(*shape, 2, dtype=dtype.to_real(), device=self.device)
            return torch.view_as_complex(self._recv(real, peer, step, "the state"))
        buffer = torch.empty(*shape, dtype=dtype, device=self.device)
        return self._recv(buffer, peer, step, "the state")

    def send_ack(self, step: int) -> None:
        """Tell the upstream stage that ``step`` is done (asynchronous)."""
        ack = torch.tensor([step], dtype=torch.int64, device=self.device)
        self._isend(ack, self.upstream, step, "the acknowledgement")

    def await_ack(self, step: int) -> None:
        """Wait for the downstream stage's acknowledgement of ``step``."""
        ack = torch.empty(1, dtype=torch.int64, device=self.device)
        got = int(self._recv(ack, self.downstream, step, "the acknowledgement").item())
        if got != step:
            raise PipelinePeerError(
                f"{self._where()}: rank {self.downstream} acknowledged step {got}, expected {step}"
            )

    def average_gradients(self, params: list[torch.nn.Parameter], bad: bool, step: int) -> bool:
        """Average ``params``' gradients over the stage's replicas (in place).

        One flattened all-reduce carries every gradient (``None`` counts as zeros) and a flag;
        returns ``True`` when any replica reported a non-finite loss (``bad``), in which case the
        gradients are left unaveraged and must be discarded.
        """
        if self.layout.replicas == 1:
            return bad
        dtype = params[0].dtype if params else torch.float32
        pieces = [torch.full((1,), float(bad), dtype=dtype, device=self.device)]
        for p in params:
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            pieces.append(grad.detach().reshape(-1).to(dtype))
        flat = torch.cat(pieces)
        peers = f"of stage {self.stage} replicas {self.layout.stage_ranks(self.stage)}"
        try:
            work = dist.all_reduce(flat, group=self.stage_group, async_op=True)
        except Exception as err:
            self.fail("averaging gradients with", peers, step, err)
        self.wait(work, "averaging gradients with", peers, step)
        if flat[0].item() > 0:
            return True
        flat /= self.layout.replicas
        offset = 1
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
            offset += n
        return False

    def drain(self, step: int) -> None:
        """Wait until every asynchronous send completed."""
        for work, _, peer, what in self._pending:
            self.wait(work, what, peer, step)
        self._pending = []

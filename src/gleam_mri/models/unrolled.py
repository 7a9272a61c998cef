"""Unrolled networks: the per-batch :class:`Problem`, iterations, and :class:`UnrolledNet`.

An unrolled network maps a state through an ordered sequence of iterations,
``state_{k+1} = iteration_k(state_k, problem)``, starting from ``net.init_state(problem)`` and read
out as an image by ``net.image(state, problem)``. The *state* is a tensor whose meaning the network
fixes: the image ``(B, *D)`` (PGD, MoDL), the multi-coil k-space ``(B, C, *D)`` (VarNet), or for
invertible networks a stacked pair ``(2, ...)`` of either (additive coupling, exact inverse).

The same object serves every training strategy: strategies call ``prepare``, ``init_state``,
``iterations`` (or ``split(k)`` modules) and ``image``; they never change the model's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gleam_mri.physics.operators import SenseOp

STATE_KINDS = ("image", "kspace")


@dataclass(frozen=True)
class Problem:
    """Per-batch context every iteration sees, passed explicitly (never stored on modules).

    - ``op``: the :class:`SenseOp` (maps ``(B, C, *D)``, mask, ``fft_ndim``).
    - ``y``: measured, masked k-space ``(B, C, *D)`` complex.
    - ``x0``: zero-filled image ``A^H y`` ``(B, *D)`` complex.
    """

    op: SenseOp
    y: torch.Tensor
    x0: torch.Tensor

    @classmethod
    def build(
        cls, maps: torch.Tensor, mask: torch.Tensor | None, y: torch.Tensor, fft_ndim: int
    ) -> Problem:
        """Problem from maps ``(B, C, *D)``, mask, k-space ``(B, C, *D)``."""
        op = SenseOp(maps, mask, fft_ndim)
        return cls(op=op, y=y, x0=op.adjoint(y))

    @classmethod
    def from_batch(cls, batch) -> Problem:
        """Problem of an :class:`~gleam_mri.data.batch.MRIBatch` (its maps, mask, k-space)."""
        return cls.build(batch.maps, batch.mask, batch.kspace, batch.fft_ndim)

    @property
    def fft_ndim(self) -> int:
        return self.op.fft_ndim

    @property
    def mask(self) -> torch.Tensor | None:
        return self.op.mask

    @property
    def maps(self) -> torch.Tensor:
        return self.op.maps

    def with_maps(self, maps: torch.Tensor) -> Problem:
        """The same measurements with other coil maps (``x0`` recomputed)."""
        return Problem.build(maps, self.op.mask, self.y, self.fft_ndim)

    def detach(self) -> Problem:
        """A copy whose tensors carry no autograd history (input of a greedy module)."""
        maps = self.op.maps.detach()
        op = SenseOp(maps, self.op.mask, self.fft_ndim) if self.op.maps.requires_grad else self.op
        return Problem(op=op, y=self.y.detach(), x0=self.x0.detach())

    def to(self, device: torch.device | str) -> Problem:
        mask = None if self.op.mask is None else self.op.mask.to(device)
        op = SenseOp(self.op.maps.to(device), mask, self.fft_ndim)
        return dataclasses.replace(self, op=op, y=self.y.to(device), x0=self.x0.to(device))


class Iteration(nn.Module):
    """One unrolled step: ``forward(state, problem) -> state`` (same shape and dtype)."""

    def forward(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        raise NotImplementedError


class Coupling(Iteration):
    """Additive coupling around an iteration ``phi``; exactly invertible.

    On a pair state ``(a, b)`` stacked along a new leading axis ``(2, ...)``::

        a' = a + phi(b) - b
        b' = b + phi(a') - a'

    and the inverse ``b = b' - (phi(a') - a')``, ``a = a' - (phi(b) - b)``. Starting from
    ``a = b = x0``, the network reads out ``b``. ``phi`` is evaluated twice per step with the same
    weights, so the parameter count equals the non-invertible network's.
    """

    def __init__(self, phi: Iteration) -> None:
        super().__init__()
        self.phi = phi

    def _update(self, s: torch.Tensor, problem: Problem) -> torch.Tensor:
        return self.phi(s, problem) - s

    def forward(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        a, b = state[0], state[1]
        a = a + self._update(b, problem)
        b = b + self._update(a, problem)
        return torch.stack([a, b])

    @torch.no_grad()
    def inverse(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        """The input state of :meth:`forward` given its output ``(2, ...)``."""
        a, b = state[0], state[1]
        b = b - self._update(a, problem)
        a = a - self._update(b, problem)
        return torch.stack([a, b])


class UnrolledNet(nn.Module):
    """An ordered sequence of iterations (shared or separate weights), with an optional prologue.

    Args:
        iterations: the iterations in order; the same module may appear several times (shared
            weights).
        state: ``"image"`` (state is ``(B, *D)``, starts at ``x0``) or ``"kspace"`` (state is
            ``(B, C, *D)``, starts at ``y``, read out as ``S^H F^{-1} k``).
        prologue: optional module ``Problem -> Problem`` run first (e.g. VarNet's learned coil
            maps); it belongs to the first module when the network is split.
        invertible: wrap every iteration in a :class:`Coupling` (pair state, exact inverse).
    """

    def __init__(
        self,
        iterations: Sequence[Iteration],
        state: str = "image",
        prologue: nn.Module | None = None,
        invertible: bool = False,
    ) -> None:
        super().__init__()
        if not iterations:
            raise ValueError("an unrolled network needs at least one iteration")
        if state not in STATE_KINDS:
            raise ValueError(f"state must be one of {STATE_KINDS}, got {state!r}")
        if invertible:
            wrapped: dict[int, Coupling] = {}
            iterations = [wrapped.setdefault(id(it), Coupling(it)) for it in iterations]
        self.iterations = nn.ModuleList(iterations)
        self.state_kind = state
        self.prologue = prologue
        self.invertible = invertible

    def __len__(self) -> int:
        return len(self.iterations)

    def prepare(self, problem: Problem) -> Problem:
        """Run the prologue (if any) on the batch's problem."""
        return problem if self.prologue is None else self.prologue(problem)

    def init_state(self, problem: Problem) -> torch.Tensor:
        """Initial state: ``x0`` or ``y`` (stacked twice when invertible)."""
        state = problem.x0 if self.state_kind == "image" else problem.y
        return torch.stack([state, state]) if self.invertible else state

    def image(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        """Complex image ``(B, *D)`` of a state."""
        if self.invertible:
            state = state[1]
        if self.state_kind == "image":
            return state
        return problem.op.with_mask(None).adjoint(state)

    def run(
        self, state: torch.Tensor, problem: Problem, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Apply iterations ``start .. stop-1`` to ``state``."""
        for iteration in self.iterations[start:stop]:
            state = iteration(state, problem)
        return state

    def forward(self, problem: Problem) -> torch.Tensor:
        """Reconstruct: prologue, all iterations, image ``(B, *D)``."""
        problem = self.prepare(problem)
        return self.image(self.run(self.init_state(problem), problem), problem)

    def split(self, k: int) -> list[UnrolledModule]:
        """``k`` modules of consecutive iterations (sizes differ by at most one).

        Raises ``ValueError`` when weights are shared across module boundaries, since greedy
        training needs each parameter in exactly one module.
        """
        n = len(self.iterations)
        if not 1 <= k <= n:
            raise ValueError(f"cannot split {n} iterations into {k} modules (1 <= k <= {n})")
        bounds = np.cumsum([0] + [len(c) for c in np.array_split(np.arange(n), k)])
        modules = [
            UnrolledModule(self, int(bounds[i]), int(bounds[i + 1]), with_prologue=(i == 0))
            for i in range(k)
        ]
        owner: dict[int, int] = {}
        for i, module in enumerate(modules):
            for p in module.parameters():
                if owner.setdefault(id(p), i) != i:
                    raise ValueError(
                        "iterations share weights across modules; greedy training needs separate "
                        "weights per module (use shared_weights=False or fewer modules)"
                    )
        return modules


class UnrolledModule(nn.Module):
    """Iterations ``start .. stop-1`` of an :class:`UnrolledNet` (the same parameter objects)."""

    def __init__(self, net: UnrolledNet, start: int, stop: int, with_prologue: bool) -> None:
        super().__init__()
        self.start, self.stop = start, stop
        self.iterations = nn.ModuleList(net.iterations[start:stop])
        self.prologue = net.prologue if with_prologue else None

    def forward(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        for iteration in self.iterations:
            state = iteration(state, problem)
        return state

    def extra_repr(self) -> str:
        return f"iterations {self.start}..{self.stop - 1}"

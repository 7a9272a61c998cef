"""End-to-end training: ordinary backpropagation through the whole unrolled network."""

from __future__ import annotations

from gleam_mri.data.batch import MRIBatch
from gleam_mri.training.strategies.base import Strategy
from gleam_mri.training.strategies.costs import Costs


class EndToEndCosts(Costs):
    """Every iteration's activations alive until backward: ``f(B) + D * a(B)``."""

    floor_target = 1.10


class EndToEnd(Strategy):
    """Backprop through ``net(problem)``; activations of every iteration stay alive until backward.

    Saved-activation memory grows linearly with the number of iterations.
    """

    name = "e2e"
    costs = EndToEndCosts()

    def forward_backward(self, batch: MRIBatch) -> dict[str, float]:
        with self.autocast(batch):
            image = self.net(self.problem(batch))
        loss = self.loss_fn(image, batch)
        value = self.check_loss(loss)
        loss.backward()
        return {"loss": value}

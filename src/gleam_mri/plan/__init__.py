"""The memory planner (``gleam plan``): what fits a memory budget for each training strategy.

- :mod:`~gleam_mri.plan.costs`: the cost model, fitted from short real steps on the device; each
  strategy's part of it is declared by the strategy (``Strategy.costs``).
- :mod:`~gleam_mri.plan.planner`: the searches and their explanation (:func:`plan`).
- :mod:`~gleam_mri.plan.command`: the ``gleam plan`` command line.
"""

from __future__ import annotations

from gleam_mri.plan.costs import Breakdown, CostModel, MeasuredStep, measure_costs, measure_step
from gleam_mri.plan.planner import Choice, Plan, plan, problem_from_config

__all__ = [
    "Breakdown",
    "Choice",
    "CostModel",
    "MeasuredStep",
    "Plan",
    "measure_costs",
    "measure_step",
    "plan",
    "problem_from_config",
]

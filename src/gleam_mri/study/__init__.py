"""``gleam study``: every strategy under one memory budget, compared on quality, time and memory.

``arms`` (what each arm is given under the budget), ``runner`` (train, score and resume every arm
and seed), ``stats`` (paired differences with intervals), ``report`` (study.md, study.json,
figures), ``command`` (the command line)."""

from __future__ import annotations

from gleam_mri.study.arms import ARMS, ArmPlan, plan_arms, resolve_budget
from gleam_mri.study.report import summarize_study
from gleam_mri.study.runner import run_study
from gleam_mri.study.stats import PairedDifference, paired_difference

__all__ = [
    "ARMS",
    "ArmPlan",
    "PairedDifference",
    "paired_difference",
    "plan_arms",
    "resolve_budget",
    "run_study",
    "summarize_study",
]

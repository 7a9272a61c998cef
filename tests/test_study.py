"""The equal-memory study: arms planned under a budget, trained, scored, resumed, reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gleam_mri import cli
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.devices import resolve_device
from gleam_mri.plan.costs import measure_costs
from gleam_mri.plan.planner import problem_from_config
from gleam_mri.study import runner
from gleam_mri.study.arms import plan_arms, resolve_budget
from gleam_mri.study.report import summarize_study, write_outputs
from gleam_mri.study.stats import paired_difference
from gleam_mri.training.run_config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study-data")
    spec = SyntheticSpec(n_volumes=4, slices_per_volume=2, shape=(32, 32), n_coils=3, seed=3)
    write_synthetic_dataset(root, spec, progress=False)
    return root


def tiny(data: Path, *extra: str):
    sets = [f"data.root={data}", "model.unrolls=4", "model.features=4", "model.blocks=1"]
    sets += ["data.batch_size=1", "train.steps=4", "train.val_every=2", "train.log_every=1"]
    sets += ["train.ckpt_every=2", "train.tensorboard=false", "train.device=cpu"]
    sets += ["strategy.modules=null", "optim.lr=3e-3"]
    return load_config(CONFIG, [*sets, *extra])


@pytest.fixture(scope="module")
def costs(data):
    cfg = tiny(data)
    return measure_costs(cfg, *problem_from_config(cfg), resolve_device("cpu"))


def budget_between(costs, depth: int) -> int:
    """A budget in which end to end fits ``depth`` iterations but not ``depth + 1``."""
    low = costs.predict("e2e", depth, 1).total
    high = costs.predict("e2e", depth + 1, 1).total
    assert low < high
    return (low + high) // 2


def test_arms_follow_the_budget(data, costs):
    cfg = tiny(data)
    budget = budget_between(costs, 2)
    arms = {a.name: a for a in plan_arms(cfg, budget, costs)}
    assert (arms["e2e-fit"].depth, arms["e2e-fit"].fits) == (2, True)
    assert arms["greedy"].depth == 4 and arms["greedy"].fits and arms["greedy"].modules >= 2
    same = arms["greedy-same-depth"]
    assert same.depth == 2 and same.modules == 2  # decoupled: one module would be e2e-fit
    assert not arms["e2e-deep"].in_budget and arms["e2e-deep"].trained
    for arm in arms.values():
        if arm.in_budget and arm.fits:
            assert arm.predicted_bytes <= budget, arm
    assert arms["e2e-deep"].predicted_bytes > budget


def test_bad_budgets_and_arms_fail_before_training(data, costs):
    cfg = tiny(data)
    with pytest.raises(ValueError, match="no arm fits"):
        plan_arms(cfg, 1000, costs)
    with pytest.raises(ValueError, match="unknown arms"):
        plan_arms(cfg, budget_between(costs, 2), costs, ("e2e-fit", "greed"))
    assert resolve_budget("e2e@2", costs, 1) == budget_between(costs, 2)
    with pytest.raises(ValueError, match="e2e@N"):
        resolve_budget("e2e@x", costs, 1)
    with pytest.raises(ValueError, match="already fits the deep network"):
        plan_arms(cfg, costs.predict("e2e", 4, 1).total + 1, costs)
    assert cli.main(["study", CONFIG, "--budget", "1KB", "--out", "x", "--arms", "nope"]) == 2


def test_paired_difference_on_a_hand_made_example():
    d = paired_difference([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])  # differences 1, 2, 3
    # mean 2, sd 1, sem 1/sqrt(3), t(0.975, 2) = 4.302653
    assert d.mean == pytest.approx(2.0)
    assert d.high - d.mean == pytest.approx(4.302653 / 3**0.5, rel=1e-6)
    assert d.verdict == "no difference"  # 2 - 2.484 < 0
    assert paired_difference([2.0, 2.1, 1.9, 2.0], [1, 1, 1, 1]).verdict == "better"
    assert paired_difference([0.0, 0.1, -0.1, 0.0], [1, 1, 1, 1]).verdict == "worse"
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([1.0], [2.0])


def test_tiny_study_runs_reports_and_resumes(data, costs, tmp_path, monkeypatch):
    cfg = tiny(data)
    budget = budget_between(costs, 2)
    out = tmp_path / "study"
    arms = ("e2e-fit", "greedy")
    results = runner.run_study(cfg, budget, out, seeds=2, arms=arms, device="cpu", progress=False)
    report = write_outputs(results, out, "gleam study tiny")
    text = report.read_text()
    for arm in arms:
        assert f"| {arm} |" in text
        assert (out / "runs" / arm / "seed0" / "last.pt").exists()
        assert sorted(results["arms"][arm]["seeds"]) == [0, 1]
        memory = results["arms"][arm]["memory"]  # measured: the budget holds on its basis
        assert memory["planner_basis"]["total"] <= budget
        assert memory["peak_bytes"] > memory["planner_basis"]["parameters"] > 0
    summary = summarize_study(results)
    test_slices = len(results["arms"]["e2e-fit"]["seeds"][0]["slices"])
    assert test_slices >= 2 and summary["greedy"]["vs_e2e_fit"]["n"] == test_slices
    assert summary["e2e-fit"]["PSNR"]["mean"] > 10
    curve = results["arms"]["greedy"]["seeds"][0]["val"]
    assert [v["step"] for v in curve] == [0, 2, 4]
    assert curve[-1]["seconds"] > curve[0]["seconds"] == 0.0
    for name in ("study.json", "psnr_vs_memory.png", "val_psnr_vs_time.png", "images.png"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "study.json").read_text())["summary"]["greedy"]["plan"]["fits"]

    # started again: finished runs are skipped; an unfinished run resumes from its checkpoint
    (out / "runs" / "greedy" / "seed1" / "test.json").unlink()
    calls = []
    monkeypatch.setattr(runner, "fit", lambda c, resume, progress: calls.append(c.train.seed))
    again = runner.run_study(cfg, budget, out, seeds=2, arms=arms, device="cpu", progress=False)
    assert calls == []  # greedy seed 1 had its final checkpoint: only scored again
    assert (
        again["arms"]["greedy"]["seeds"][1]["volumes"]
        == results["arms"]["greedy"]["seeds"][1]["volumes"]
    )


def test_a_run_that_stops_is_reported_and_the_study_goes_on(data, costs, tmp_path, monkeypatch):
    from gleam_mri.training.errors import TrainingStopped

    def stopped(cfg, resume, progress):
        raise TrainingStopped("training stopped at step 3: non-finite loss (test)")

    monkeypatch.setattr(runner, "fit", stopped)
    cfg, out = tiny(data), tmp_path / "stopped"
    budget = budget_between(costs, 2)
    results = runner.run_study(
        cfg, budget, out, seeds=1, arms=("greedy",), device="cpu", progress=False
    )
    assert "non-finite loss (test)" in results["arms"]["greedy"]["seeds"][0]["stopped"]
    text = write_outputs(results, out, "gleam study stopped").read_text()
    assert "1 run(s) stopped" in text and "non-finite loss (test)" in text


def test_gpu_script_needs_only_the_gpu_machines_packages():
    """benchmarks/gpu.sh runs from source where only torch, numpy, h5py, PyYAML, tqdm, scipy and
    matplotlib are installed: the modules it runs import nothing else."""
    import subprocess
    import sys

    blocked = ["nibabel", "pydicom", "twixtools", "tensorboard", "skimage", "ismrmrd", "fastmri"]
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from gleam_mri import cli
from gleam_mri.bench import command, harness
from gleam_mri.data import synthetic
from gleam_mri.study import command, report, runner
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]

"""Memory planner: size parsing, predictions against real steps, plans that fit, the command."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from gleam_mri.data.fastmri import write_fastmri
from gleam_mri.plan.command import add_parser
from gleam_mri.plan.planner import measure_costs, measure_step, plan, problem_from_config
from gleam_mri.training.run_config import load_config
from gleam_mri.units import format_size, parse_size

SHAPE, COILS = (32, 32), 4
SMALL = ["model.features=8", "model.blocks=2", "model.unrolls=6", "data.batch_size=2"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, [*SMALL, "strategy.checkpoint_every=2"])


@pytest.fixture(scope="module")
def costs(cfg):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure_costs(cfg, "2d", SHAPE, COILS, "cpu")
    finally:
        torch.set_num_threads(threads)


def measured(cfg, strategy, depth, batch, **options):
    return measure_step(
        cfg, "2d", SHAPE, COILS, "cpu", strategy=strategy, depth=depth, batch=batch, **options
    ).breakdown


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GiB", 24 * 2**30),
        ("512MiB", 512 * 2**20),
        ("1.5GB", 1_500_000_000),
        ("2e9", 2_000_000_000),
        ("4096", 4096),
        (" 3 kib ", 3072),
        ("2G", 2 * 2**30),
        ("100B", 100),
        (1234, 1234),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "cannot read"),
        ("lots", "cannot read"),
        ("-1GiB", "cannot read"),
        ("24Q", "unknown unit 'Q'"),
        ("1.5 gibibytes", "unknown unit"),
        ("0", "at least 1 byte"),
        ("0.1", "at least 1 byte"),
        ("nan", "cannot read"),
    ],
)
def test_parse_size_rejects(text, match):
    with pytest.raises(ValueError, match=match):
        parse_size(text)
    with pytest.raises(TypeError):
        parse_size(None)


def test_format_size():
    assert format_size(3 * 2**30) == "3.00 GiB"
    assert format_size(1536) == "1.50 KiB"
    assert format_size(12) == "12 B"


# ----------------------------------------------------------------------------- predictions


@pytest.mark.parametrize(
    ("strategy", "depth", "batch", "options"),
    [
        ("e2e", 5, 3, {}),
        ("greedy", 7, 3, {"modules": 2}),  # largest module: 4 iterations
        ("greedy", 5, 3, {}),  # one module per iteration
        ("checkpoint", 7, 3, {"every": 2}),
        ("invertible", 5, 3, {}),
    ],
)
def test_prediction_matches_unmeasured_step(cfg, costs, strategy, depth, batch, options):
    """Calibrated at depths 1-3 and batches 1-2; checked at depth 5-7 and batch 3."""
    real = measured(cfg, strategy, depth, batch, **options)
    predicted = costs.predict(strategy, depth, batch, **options)
    assert real.activations > 0
    assert predicted.activations == pytest.approx(real.activations, rel=0.10)
    counted = ("parameters", "gradients", "optimizer", "batch")
    assert [getattr(predicted, k) for k in counted] == [getattr(real, k) for k in counted]
    assert predicted.recompute == (2 * round(costs.terms["a"](3)) if "every" in options else 0)


def test_strategies_scale_as_modelled(costs):
    e2e = [costs.predict("e2e", d, 2).activations for d in (4, 8, 16)]
    assert e2e[2] - e2e[1] == pytest.approx(2 * (e2e[1] - e2e[0]), rel=1e-6)  # linear in depth
    greedy = [costs.predict("greedy", d, 2).activations for d in (4, 8, 16)]
    assert greedy[0] == greedy[2] < e2e[0]  # one module per iteration: flat
    ckpt = [costs.predict("checkpoint", d, 2, every=2) for d in (4, 8)]
    assert ckpt[1].activations - ckpt[0].activations == 2 * round(costs.terms["s"](2))
    assert ckpt[1].recompute == ckpt[0].recompute > 0  # one segment recomputed at a time
    params = [costs.predict("e2e", d, 1).parameters for d in (2, 4)]
    assert params[1] == 2 * params[0] > 0


def test_predict_rejects_bad_settings(costs):
    with pytest.raises(ValueError, match="unknown strategy 'adam'"):
        costs.predict("adam", 4, 1)
    with pytest.raises(ValueError, match="modules <= depth"):
        costs.predict("greedy", 4, 1, modules=5)
    with pytest.raises(ValueError, match="depth and batch must be >= 1"):
        costs.predict("e2e", 0, 1)
    with pytest.raises(ValueError, match="unknown strategy"):
        measure_step(load_config(None), "2d", SHAPE, COILS, "cpu", strategy="x", depth=1, batch=1)


# ----------------------------------------------------------------------------- plans


def test_plan_choices_really_fit(cfg, costs):
    """Budget between the predicted e2e totals at depth 4 and 5 (config batch 2)."""
    budget = (costs.predict("e2e", 4, 2).total + costs.predict("e2e", 5, 2).total) // 2
    result = plan(cfg, budget, costs=costs, max_depth=24)
    e2e = result.choice("e2e", "depth")
    assert (e2e.value, e2e.batch) == (4, 2)
    assert measured(cfg, "e2e", 4, 2).total <= budget < measured(cfg, "e2e", 5, 2).total
    assert e2e.next_total > budget

    batch = result.choice("e2e", "batch")  # at the config's depth 6
    assert batch.value == 1
    assert measured(cfg, "e2e", 6, 1).total <= budget < measured(cfg, "e2e", 6, 2).total

    greedy = result.choice("greedy", "depth")  # one module per iteration: flat activations
    assert greedy.value > e2e.value
    assert measured(cfg, "greedy", greedy.value, 2).total <= budget
    modules = result.choice("greedy", "modules")  # fewest modules at depth 6, batch 2
    assert modules.value == 2
    assert measured(cfg, "greedy", 6, 2, modules=2).total <= budget
    assert measured(cfg, "greedy", 6, 2, modules=1).total > budget

    for strategy in ("checkpoint", "invertible"):
        choice = result.choice(strategy, "depth")
        assert choice.value is not None and choice.value > e2e.value
        assert choice.predicted.total <= budget
        assert measured(cfg, strategy, choice.value, 2, every=choice.every).total <= budget


def test_plan_explains_and_serialises(cfg, costs):
    budget = costs.predict("e2e", 4, 2).total
    result = plan(cfg, budget, costs=costs, max_depth=16, max_batch=8)
    text = result.explain()
    assert f"budget of {format_size(budget)}" in text
    assert "saved for backward" in text  # the CPU limitation is stated
    for strategy in ("e2e", "checkpoint", "invertible", "greedy"):
        assert f"\n{strategy}:" in text
    assert "depth 4 at batch 2" in text and "Depth 5 would need" in text
    assert "largest part: activations" in text and "headroom" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["budget"] == budget
    assert {(c["strategy"], c["knob"]) for c in data["choices"]} >= {("greedy", "modules")}


def test_plan_reports_when_nothing_fits(cfg, costs):
    result = plan(cfg, 1000, costs=costs, strategies=["e2e"])
    choice = result.choice("e2e", "depth")
    assert choice.value is None and choice.predicted.total > 1000
    assert "nothing fits" in result.explain()
    with pytest.raises(KeyError, match="greedy"):
        result.choice("greedy", "depth")


def test_plan_rejects_bad_input(cfg, costs):
    with pytest.raises(ValueError, match="cannot read a memory size"):
        plan(cfg, "lots", costs=costs)
    with pytest.raises(ValueError, match="unknown strategies \\['adam'\\]"):
        plan(cfg, "1GiB", costs=costs, strategies=["e2e", "adam"])
    with pytest.raises(ValueError, match="max_depth must be an integer >= 1"):
        plan(cfg, "1GiB", costs=costs, max_depth=0)


# ----------------------------------------------------------------------------- problem shape


def test_problem_from_config(tmp_path, rng):
    kspace = (rng.standard_normal((2, 3, 4, 10, 8)) + 0j).astype(np.complex64)
    write_fastmri(tmp_path / "train" / "a.h5", kspace, kind="3d")
    cfg = load_config(None, [f"data.root={tmp_path}", "data.kind=3d"])
    assert problem_from_config(cfg) == ("3d", (4, 10, 8), 3)
    slab = load_config(None, [f"data.root={tmp_path}", "data.slab=6"])
    assert problem_from_config(slab, coils=2) == ("3d", (4, 6, 8), 2)
    with pytest.raises(ValueError, match="holds 3d data"):
        problem_from_config(cfg, kind="2d")
    assert problem_from_config(cfg, shape=(16, 12), coils=5, kind="2d") == ("2d", (16, 12), 5)
    with pytest.raises(ValueError, match="does not fit 2d data"):
        problem_from_config(cfg, shape=(4, 16, 12), coils=5, kind="2d")
    with pytest.raises(ValueError, match="needs the number of coils"):
        problem_from_config(cfg, shape=(4, 16, 12))
    empty = load_config(None, [f"data.root={tmp_path / 'none'}"])
    with pytest.raises(ValueError, match=r"no \.h5 files in .*none"):
        problem_from_config(empty)


# ----------------------------------------------------------------------------- command


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gleam")
    add_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_command_prints_plan_and_writes_json(tmp_path, capsys):
    config = tmp_path / "small.yaml"
    config.write_text("model: {features: 8, blocks: 2, unrolls: 4}\ndata: {batch_size: 1}\n")
    out = tmp_path / "plan.json"
    argv = ["plan", str(config), "--budget", "3MiB", "--shape", "24x24", "--coils", "3"]
    argv += ["--device", "cpu", "--strategies", "e2e,greedy", "--max-depth", "12"]
    argv += ["--json", str(out)]
    args = parser().parse_args(argv)
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "budget of 3.00 MiB" in text and "greedy:" in text and "invertible:" not in text
    data = json.loads(out.read_text())
    assert data["budget"] == 3 * 2**20
    assert data["costs"]["shape"] == [24, 24] and data["costs"]["coils"] == 3


def test_command_rejects_bad_budget(capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["plan", "cfg.yaml", "--budget", "24Q"])
    assert exc.value.code == 2
    assert "unknown unit 'Q'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.parametrize(
    ("strategy", "depth", "options"),
    [
        ("e2e", 6, {}),
        ("greedy", 8, {"modules": 2}),
        ("checkpoint", 8, {"every": 2}),
        ("invertible", 6, {}),
    ],
)
def test_cuda_prediction_within_ten_percent(strategy, depth, options):
    """Allocator peak of a real step at an unmeasured depth and batch vs the prediction."""
    cfg = load_config(None, ["model.features=32", "model.blocks=3", "model.unrolls=8"])
    device, shape, coils = torch.device("cuda"), (128, 128), 8
    costs = measure_costs(cfg, "2d", shape, coils, device)
    real = measure_step(
        cfg, "2d", shape, coils, device, strategy=strategy, depth=depth, batch=3, **options
    )
    predicted = costs.predict(strategy, depth, 3, **options)
    assert real.cuda_peak_bytes == real.breakdown.total
    assert predicted.total == pytest.approx(real.cuda_peak_bytes, rel=0.10)

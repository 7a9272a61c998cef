"""A strategy declared in one class (its options and its costs beside it) and registered with one
line of ``STRATEGIES`` is trained by ``gleam train``, planned by ``gleam plan`` and measured by
``gleam bench``, with no other file touched."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from gleam_mri import cli
from gleam_mri.models.unrolled import UnrolledNet
from gleam_mri.schema import at_least
from gleam_mri.training.strategies import STRATEGIES, StrategyOptions
from gleam_mri.training.strategies.costs import Costs, Terms
from gleam_mri.training.strategies.end_to_end import EndToEnd

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")
TINY = ["model.unrolls=2", "model.features=4", "model.blocks=1", "train.device=cpu"]
TINY += ["train.tensorboard=false", "data.batch_size=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class HalvedOptions(StrategyOptions):
    """``strategy.halvings``: how many times the learning rate is halved."""

    halvings: int = field(default=1, metadata=at_least(1))


class HalvedCosts(Costs):
    """End to end's activations, but by a law of its own: measured at depths 2 and 3."""

    calibration = (2, 3)
    line_terms = ("f_h", "a_h")

    def activations(
        self, terms: Terms, depth: int, batch: int, setting: Mapping[str, int | None]
    ) -> tuple[float, float]:
        return terms["f_h"](batch) + depth * terms["a_h"](batch), 0.0


class Halved(EndToEnd):
    """End to end with the learning rate halved ``halvings`` times."""

    name = "halved"
    Options = HalvedOptions
    costs = HalvedCosts()

    def __init__(self, net: UnrolledNet, loss_fn, *, halvings: int = 1, **kwargs) -> None:
        kwargs["lr"] = kwargs.get("lr", 1e-3) / 2**halvings
        super().__init__(net, loss_fn, **kwargs)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "halved", Halved)  # the one registry line


@pytest.fixture(scope="module")
def data(tiny_2d_data) -> Path:
    return tiny_2d_data("halved", seed=2)


def test_gleam_train_trains_it(registered, data, tmp_path):
    out = tmp_path / "run"
    sets = [*TINY, f"data.root={data}", f"train.out_dir={out}", "train.steps=2"]
    sets += ["train.val_every=0", "strategy.name=halved", "strategy.halvings=2", "optim.lr=4e-3"]
    args = ["train", CONFIG, "--quiet"] + [a for s in sets for a in ("--set", s)]
    assert cli.main(args) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["strategy"]["strategy"] == "halved" and ckpt["step"] == 2
    section = ckpt["config"]["strategy"]
    assert (section["name"], section["halvings"]) == ("halved", 2)
    lr = ckpt["strategy"]["optimizers"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(4e-3 / 4)


def test_gleam_plan_plans_it_with_its_own_costs(registered, data, tmp_path, capsys):
    report = tmp_path / "plan.json"
    sets = [*TINY, f"data.root={data}", "model.unrolls=4"]
    args = ["plan", CONFIG, "--budget", "64MiB", "--json", str(report), "--max-depth", "8"]
    args += ["--max-batch", "4"] + [a for s in sets for a in ("--set", s)]
    assert cli.main(args) == 0
    assert "\nhalved:" in capsys.readouterr().out
    plan = json.loads(report.read_text())
    assert {"f_h", "a_h"} <= set(plan["costs"]["terms"])  # measured at its own depths
    chosen = {(c["strategy"], c["knob"]): c["value"] for c in plan["choices"]}
    # the same network end to end: its own line through depths 2 and 3 is end to end's
    assert plan["costs"]["terms"]["a_h"] == plan["costs"]["terms"]["a"]
    assert chosen["halved", "depth"] == chosen["e2e", "depth"] is not None
    assert chosen["halved", "batch"] == chosen["e2e", "batch"]


def test_gleam_bench_measures_it(registered, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--preset", "tiny-2d", "--strategies", "e2e", "halved", "--depths", "2"]
    args += ["--no-floors", "--repeats", "1", "--warmup", "0", "--device", "cpu", "--quiet"]
    args += ["--set", "strategy.halvings=3", "--out", str(out)]
    assert cli.main(args) == 0
    records = json.loads((out / "bench.json").read_text())["records"]
    halved = next(r for r in records if r["strategy"] == "halved")
    assert halved["status"] == "ok" and halved["strategy_options"] == {"halvings": 3}
    e2e = next(r for r in records if r["strategy"] == "e2e")
    assert halved["memory_bytes"] == e2e["memory_bytes"]  # the same network, end to end

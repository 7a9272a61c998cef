"""Training strategies: equal gradients, greedy isolation, optimizers, AMP, clipping, resume."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from gleam_mri.metrics import SSIMLoss
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import STRATEGIES, Greedy, build_strategy, strategy_settings
from gleam_mri.training.strategies.base import NonFiniteLossError
from models_for_tests import KINDS, gradients, make_batch, make_net

VARIANTS = {  # name -> make_net keyword arguments
    "plain": {},
    "prologue": {"prologue": True},
    "kspace+prologue": {"prologue": True, "state": "kspace"},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same_gradients(ref, other, rtol: float) -> None:
    (loss_a, grads_a), (loss_b, grads_b) = ref, other
    assert loss_b == pytest.approx(loss_a, rel=rtol)
    assert grads_a.keys() == grads_b.keys()
    total = torch.sqrt(sum(g.norm() ** 2 for g in grads_a.values()))
    assert total > 0
    for name, g in grads_a.items():
        err = (grads_b[name] - g).norm() / max(g.norm(), 1e-6 * total)
        assert err <= rtol, f"{name}: relative gradient error {err:.2e}"


def params(net) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in net.named_parameters()}


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_and_invertible_match_end_to_end(kind, variant):
    """Same loss and gradients in float64 (measured ~1e-15; bound 1e-10)."""
    batch = make_batch(kind)
    net = make_net(kind, 3, **VARIANTS[variant])
    ref = gradients("e2e", copy.deepcopy(net), batch)
    for every in (1, 2):
        assert_same_gradients(
            ref, gradients("checkpoint", copy.deepcopy(net), batch, every=every), 1e-10
        )
    inv = make_net(kind, 3, invertible=True, **VARIANTS[variant])
    ref = gradients("e2e", copy.deepcopy(inv), batch)
    assert_same_gradients(ref, gradients("invertible", copy.deepcopy(inv), batch), 1e-10)


def test_invertible_needs_an_invertible_net():
    with pytest.raises(ValueError, match="invertible=True"):
        build_strategy("invertible", make_net("2d", 2), build_loss("l1"))


def test_build_strategy_table_and_unknown_name():
    assert set(STRATEGIES) == {"e2e", "checkpoint", "invertible", "greedy", "pipeline"}
    with pytest.raises(ValueError, match="unknown training strategy 'sgd'"):
        build_strategy("sgd", make_net("2d", 2), build_loss("l1"))
    with pytest.raises(ValueError, match="every"):
        build_strategy("checkpoint", make_net("2d", 2), build_loss("l1"), every=0)


# ----------------------------------------------------------------------------- greedy


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_greedy_with_one_module_equals_end_to_end(kind, variant):
    """One module is the whole network: the same loss, gradients and parameters after a step
    (float64, SGD with momentum and Adam; measured equal to the last bit, bound 1e-12)."""
    batch = make_batch(kind)
    for optimizer in ("SGD", "Adam"):
        nets = [make_net(kind, 3, **VARIANTS[variant]) for _ in range(2)]
        kwargs = {"optimizer": optimizer, "lr": 1e-2}
        if optimizer == "SGD":
            kwargs["optimizer_kwargs"] = {"momentum": 0.9}
        e2e = build_strategy("e2e", nets[0], build_loss("l1"), **kwargs)
        greedy = build_strategy("greedy", nets[1], build_loss("l1"), modules=1, **kwargs)
        for _ in range(2):
            a, b = e2e.train_step(batch), greedy.train_step(batch)
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-12, abs=0)
        for (name, p), q in zip(nets[0].named_parameters(), nets[1].parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-12, msg=name)
        assert any(
            not torch.equal(p, q)
            for p, q in zip(
                nets[0].parameters(),
                make_net(kind, 3, **VARIANTS[variant]).parameters(),
                strict=True,
            )
        )  # the step changed the parameters


def test_single_process_pipeline_is_simultaneous_greedy():
    """Without a process group a pipeline stage owns every module: greedy, bit for bit."""
    batch = make_batch("2d")
    nets = [make_net("2d", 4, prologue=True) for _ in range(2)]
    greedy = build_strategy("greedy", nets[0], build_loss("mse"), modules=2)
    stage = build_strategy("pipeline", nets[1], build_loss("mse"), modules=2)
    assert stage.module_ids == [0, 1] and stage.is_first and stage.is_last
    for _ in range(3):
        assert greedy.train_step(batch) == stage.train_step(batch)
    stage.finish()
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(greedy.reconstruct(batch), stage.reconstruct(batch))


def test_greedy_one_optimizer_per_module():
    net = make_net("2d", 4, prologue=True)
    strategy = Greedy(net, build_loss("l1"), modules=2)
    assert len(strategy.optimizers) == len(strategy.modules) == 2
    owned = [{id(p) for g in opt.param_groups for p in g["params"]} for opt in strategy.optimizers]
    assert owned[0].isdisjoint(owned[1])
    assert owned[0] | owned[1] == {id(p) for p in net.parameters()}
    assert id(net.prologue.gain) in owned[0]  # the prologue belongs to module 0
    assert len(Greedy(make_net("2d", 3), build_loss("l1")).optimizers) == 3  # None: one each


def test_greedy_gradients_stay_inside_their_module():
    """Each parameter's gradient arrives only while its own module's loss is backpropagated."""
    net = make_net("cine", 3, prologue=True)
    batch = make_batch("cine")
    calls: list[int] = []
    l1 = build_loss("l1")

    def counting_loss(image, b):
        calls.append(len(calls))
        return l1(image, b)

    strategy = Greedy(net, counting_loss, modules=3)
    owner = {id(p): m for m, mod in enumerate(strategy.modules) for p in mod.parameters()}
    arrivals: list[tuple[int, int]] = []
    for p in net.parameters():
        module_index = owner[id(p)]
        p.register_hook(lambda g, m=module_index: arrivals.append((m, calls[-1])))
    inputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for mod in strategy.modules:
        mod.register_forward_pre_hook(lambda _, args: inputs.append((args[0], args[1].maps)))
    metrics = strategy.forward_backward(batch)

    assert calls == [0, 1, 2]
    assert {m for m, _ in arrivals} == {0, 1, 2}
    assert all(m == loss_index for m, loss_index in arrivals), arrivals
    assert inputs[0][1].requires_grad  # module 0 sees the prologue's maps with their graph
    for state, maps in inputs[1:]:  # later modules: detached state and problem
        assert not state.requires_grad and not maps.requires_grad
    assert set(metrics) == {"loss", "loss/module_0", "loss/module_1", "loss/module_2"}
    assert metrics["loss"] == metrics["loss/module_2"]


def test_greedy_simultaneous_equals_sequential_per_module():
    """Module m's gradient is that of its own loss on the frozen, detached earlier modules."""
    net = make_net("2d", 3, prologue=True)
    batch = make_batch("2d")
    simultaneous = copy.deepcopy(net)
    Greedy(simultaneous, build_loss("mse")).forward_backward(batch)
    for m in range(3):
        alone = copy.deepcopy(net)
        strategy = Greedy(alone, build_loss("mse"), mode="sequential", steps_per_module=1)
        strategy.module_steps = [1] * m + [0] * (3 - m)
        assert strategy.active_module == m
        strategy.forward_backward(batch)
        for (name, p), q in zip(simultaneous.named_parameters(), alone.parameters(), strict=True):
            if id(q) in {id(x) for x in strategy.modules[m].parameters()}:
                assert torch.allclose(p.grad, q.grad, rtol=1e-12, atol=1e-15), name
            else:
                assert q.grad is None, f"{name} got a gradient while module {m} trained"


def test_greedy_module_loss_for_intermediate_modules():
    used: list[str] = []
    l1, mse = build_loss("l1"), build_loss("mse")
    strategy = Greedy(
        make_net("2d", 3),
        lambda i, b: used.append("last") or l1(i, b),
        module_loss=lambda i, b: used.append("mid") or mse(i, b),
    )
    strategy.train_step(make_batch("2d"))
    assert used == ["mid", "mid", "last"]


def test_greedy_sequential_trains_one_module_at_a_time_and_resumes():
    net = make_net("3d", 3)
    batch = make_batch("3d")
    kwargs = {"optimizer": "SGD", "lr": 0.1, "mode": "sequential", "steps_per_module": 2}
    strategy = Greedy(net, build_loss("l1"), **kwargs)
    module_params = [list(m.parameters()) for m in strategy.modules]
    for step, expected in enumerate([0, 0, 1, 1, 2, 2, 2]):
        before = [[p.detach().clone() for p in ps] for ps in module_params]
        metrics = strategy.train_step(batch)
        assert metrics["module"] == expected and f"loss/module_{expected}" in metrics
        for m, ps in enumerate(module_params):
            changed = any(not torch.equal(a, p) for a, p in zip(before[m], ps, strict=True))
            assert changed == (m == expected), (step, m)
        if step == 2:
            resumed = Greedy(copy.deepcopy(net), build_loss("l1"), **kwargs)
            resumed.load_state_dict(strategy.state_dict())
            assert resumed.active_module == strategy.active_module == 1
    assert strategy.state_dict()["extra"]["module_steps"] == [2, 2, 3]


# ----------------------------------------------------------------------------- common API


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_non_finite_loss_raises_before_any_update(name):
    net = make_net("2d", 3, invertible=name == "invertible", dtype=torch.float32)
    batch = make_batch("2d", torch.float32)
    l1 = build_loss("l1")
    calls = []

    def nan_on_third_call(image, b):  # greedy: modules 0 and 1 are fine, module 2 is not
        calls.append(1)
        return l1(image, b) * (math.nan if len(calls) == 3 or name != "greedy" else 1.0)

    strategy = build_strategy(name, net, nan_on_third_call, optimizer="SGD", lr=1.0)
    before = params(net)
    with pytest.raises(NonFiniteLossError, match=rf"{name}.*non-finite loss nan at step 1"):
        strategy.train_step(batch)
    after = params(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert strategy.step == 0
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_amp_bf16_runs_with_finite_float32_loss(name):
    net = make_net("cine", 2, invertible=name == "invertible", dtype=torch.float32)
    dtypes = set()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    strategy = build_strategy(name, net, build_loss("l1+ssim"), amp=True)
    metrics = strategy.train_step(make_batch("cine", torch.float32))
    assert math.isfinite(metrics["loss"])
    assert dtypes == {torch.bfloat16}
    image = strategy.reconstruct(make_batch("cine", torch.float32))
    assert image.dtype == torch.complex64 and torch.isfinite(image).all()


@pytest.mark.parametrize("name", ["e2e", "greedy"])
def test_grad_clip_bounds_each_update(name):
    net = make_net("2d", 2, dtype=torch.float32)
    strategy = build_strategy(name, net, build_loss("mse"), optimizer="SGD", lr=1.0, grad_clip=1e-3)
    before = params(net)
    metrics = strategy.train_step(make_batch("2d", torch.float32))
    groups = [
        [n for n, p in net.named_parameters() if any(p is q for q in g)]
        for g in (opt.param_groups[0]["params"] for opt in strategy.optimizers)
    ]
    for names in groups:  # SGD with lr 1: the update is minus the clipped gradient
        step = torch.sqrt(sum((params(net)[n] - before[n]).norm() ** 2 for n in names))
        assert step <= 1e-3 * (1 + 1e-5)
    norms = [v for k, v in metrics.items() if k.startswith("grad_norm")]
    assert len(norms) == len(strategy.optimizers) and min(norms) > 1e-3  # clipping was active


def test_optimizer_and_scheduler_by_name():
    net = make_net("2d", 2, dtype=torch.float32)
    batch = make_batch("2d", torch.float32)
    s = build_strategy(
        "e2e",
        net,
        build_loss("l1"),
        optimizer="SGD",
        lr=0.1,
        optimizer_kwargs={"momentum": 0.9},
        scheduler="StepLR",
        scheduler_kwargs={"step_size": 1, "gamma": 0.5},
    )
    assert isinstance(s.optimizers[0], torch.optim.SGD)
    assert s.optimizers[0].param_groups[0]["momentum"] == 0.9
    lrs = [s.train_step(batch)["lr"] for _ in range(3)]
    assert lrs == pytest.approx([0.1, 0.05, 0.025])
    g = build_strategy(
        "greedy",
        net,
        build_loss("l1"),
        optimizer="AdamW",
        scheduler="ExponentialLR",
        scheduler_kwargs={"gamma": 0.9},
    )
    assert all(isinstance(o, torch.optim.AdamW) for o in g.optimizers) and len(g.schedulers) == 2
    for bad, match in [
        ({"optimizer": "Adamm"}, "unknown optimizer 'Adamm'"),
        ({"optimizer": "Optimizer"}, "unknown optimizer"),
        ({"scheduler": "StepLRR"}, "unknown scheduler 'StepLRR'"),
        ({"scheduler": "ReduceLROnPlateau"}, "validation metric"),
    ]:
        with pytest.raises(ValueError, match=match):
            build_strategy("e2e", net, build_loss("l1"), **bad)
    with pytest.raises(TypeError, match="StepLR"):
        build_strategy("e2e", net, build_loss("l1"), scheduler="StepLR")  # no step_size


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_state_dict_round_trip_resumes_identically(name):
    net = make_net("2d", 2, invertible=name == "invertible", dtype=torch.float32)
    batch = make_batch("2d", torch.float32)
    kwargs = {"scheduler": "StepLR", "scheduler_kwargs": {"step_size": 1, "gamma": 0.7}}
    strategy = build_strategy(name, net, build_loss("l1"), **kwargs)
    for _ in range(2):
        strategy.train_step(batch)
    twin_net = copy.deepcopy(net)
    twin = build_strategy(name, twin_net, build_loss("l1"), **kwargs)
    twin.load_state_dict(copy.deepcopy(strategy.state_dict()))
    assert twin.step == 2
    assert strategy.train_step(batch) == twin.train_step(batch)
    assert all(
        torch.equal(a, b) for a, b in zip(net.parameters(), twin_net.parameters(), strict=True)
    )
    with pytest.raises(ValueError, match="cannot be loaded"):
        other = "e2e" if name != "e2e" else "checkpoint"
        build_strategy(other, make_net("2d", 2), build_loss("l1")).load_state_dict(
            strategy.state_dict()
        )


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_short_training_lowers_the_loss(name):
    net = make_net("2d", 3, invertible=name == "invertible", prologue=True, dtype=torch.float32)
    batch = make_batch("2d", torch.float32)
    loss_fn = build_loss("l1")
    strategy = build_strategy(name, net, loss_fn, lr=3e-3)
    initial = float(loss_fn(strategy.reconstruct(batch), batch))
    for _ in range(30):
        strategy.train_step(batch)
    final = float(loss_fn(strategy.reconstruct(batch), batch))
    assert final < 0.7 * initial, (initial, final)


# ----------------------------------------------------------------------------- losses


def test_losses_compare_cropped_magnitude_with_target():
    batch = make_batch("2d")
    image = make_batch("2d", seed=1).kspace[:, 0]  # any complex (B, H, W)
    pred = image.abs()[..., 1:-1, 1:-1]
    assert torch.allclose(build_loss("l1")(image, batch), F.l1_loss(pred, batch.target))
    assert torch.allclose(build_loss("mse")(image, batch), F.mse_loss(pred, batch.target))
    ssim = SSIMLoss()(pred, batch.target)
    assert torch.allclose(build_loss("ssim")(image, batch), ssim)
    combined = 0.84 * ssim + 0.16 * F.l1_loss(pred, batch.target)
    assert torch.allclose(build_loss("l1+ssim")(image, batch), combined)
    single = make_batch("2d", torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = build_loss("l1+ssim")(image.to(torch.complex64), single)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        build_loss("l2")
    with pytest.raises(TypeError, match="complex"):
        build_loss("l1")(pred, batch)


# ----------------------------------------------------------------------------- extension


def test_a_new_strategy_is_one_class_and_one_registry_entry(monkeypatch):
    """A strategy declared in one place (with its options) is configured, checked and built."""
    from dataclasses import dataclass, field

    from gleam_mri.config import ConfigError
    from gleam_mri.models.unrolled import UnrolledNet
    from gleam_mri.schema import at_least
    from gleam_mri.training.run_config import load_config
    from gleam_mri.training.strategies import StrategyOptions, strategy_from_config
    from gleam_mri.training.strategies.end_to_end import EndToEnd

    @dataclass
    class HalvedOptions(StrategyOptions):
        halvings: int = field(default=1, metadata=at_least(1))

    class Halved(EndToEnd):  # end to end with the learning rate halved `halvings` times
        name = "halved"
        Options = HalvedOptions

        def __init__(self, net: UnrolledNet, loss_fn, *, halvings: int = 1, **kwargs):
            kwargs["lr"] = kwargs.get("lr", 1e-3) / 2**halvings
            self.halvings = halvings
            super().__init__(net, loss_fn, **kwargs)

    monkeypatch.setitem(STRATEGIES, "halved", Halved)
    cfg = load_config(None, ["strategy.name=halved", "strategy.halvings=3", "model.unrolls=2"])
    assert strategy_settings(cfg) == HalvedOptions(halvings=3)
    strategy = strategy_from_config(cfg, make_net("2d", 2))
    assert isinstance(strategy, Halved) and strategy.halvings == 3
    assert strategy.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3 / 8)
    with pytest.raises(ConfigError, match=r"strategy\.halvings: must be >= 1"):
        load_config(None, ["strategy.name=halved", "strategy.halvings=0"])


def test_coupling_inversion_error_is_rounding():
    strategy = build_strategy("invertible", make_net("2d", 3, invertible=True), build_loss("l1"))
    assert strategy.forward_backward(make_batch("2d"))["inversion_error"] < 1e-12

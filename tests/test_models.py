"""The ready-made networks (PGD, MoDL, E2E-VarNet) under every strategy, in 2D, 3D and cine."""

from __future__ import annotations

import pytest
import torch

from gleam_mri.config import ModelConfig
from gleam_mri.meters import SavedTensorMeter
from gleam_mri.models.builders import build_model
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy
from models_for_tests import make_batch

MODELS = ["pgd", "modl", "varnet"]
KINDS = ["2d", "3d", "cine"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(name: str, kind: str, unrolls: int = 3, invertible: bool = False, **extra):
    cfg = ModelConfig(
        name=name,
        unrolls=unrolls,
        features=4,
        blocks=1,
        levels=1,
        sens_features=2,
        sens_levels=1,
        invertible=invertible,
        dc={"cg_iters": 30} if name == "modl" else {},
        **extra,
    )
    torch.manual_seed(0)
    return build_model(cfg, kind).double()


def loss_and_grads(strategy: str, net, batch) -> tuple[float, dict[str, torch.Tensor]]:
    s = build_strategy(strategy, net, build_loss("mse"))
    loss = s.forward_backward(batch)["loss"]
    return loss, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def assert_close_grads(a, b, rtol: float) -> None:
    (loss_a, ga), (loss_b, gb) = a, b
    assert loss_b == pytest.approx(loss_a, rel=rtol)
    assert ga.keys() == gb.keys() and len(ga) > 0
    for name in ga:
        err = (ga[name] - gb[name]).norm() / ga[name].norm().clamp_min(1e-12)
        assert err <= rtol, f"{name}: relative gradient error {err:.2e}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_gives_end_to_end_gradients(name, kind):
    batch = make_batch(kind)
    net = tiny(name, kind)
    ref = loss_and_grads("e2e", net, batch)
    net.zero_grad()
    assert_close_grads(ref, loss_and_grads("checkpoint", net, batch), rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_invertible_gives_end_to_end_gradients(name, kind):
    """Same invertible network: memory-free backward (inverse + recompute) vs plain autograd."""
    batch = make_batch(kind)
    net = tiny(name, kind, invertible=True)
    ref = loss_and_grads("e2e", net, batch)
    net.zero_grad()
    assert_close_grads(ref, loss_and_grads("invertible", net, batch), rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_greedy_modules_get_no_gradient_from_later_losses(name):
    batch = make_batch("2d")
    net = tiny(name, "2d", unrolls=3)
    strategy = build_strategy("greedy", net, build_loss("mse"))
    assert len(strategy.optimizers) == 3
    modules = net.split(3)
    seen: dict[int, set[int]] = {}
    current = {"module": -1}
    for m, module in enumerate(modules):
        for p in module.parameters():
            p.register_hook(lambda g, m=m: seen.setdefault(m, set()).add(current["module"]))
    original = type(net).image

    def tracking_image(self, state, problem):  # called once per module loss, in order
        current["module"] += 1
        return original(self, state, problem)

    type(net).image = tracking_image
    try:
        strategy.forward_backward(batch)
    finally:
        type(net).image = original
    assert seen == {m: {m} for m in range(3)}


def saved_peak(strategy: str, depth: int, invertible: bool = False) -> int:
    net = tiny("pgd", "2d", unrolls=depth, invertible=invertible).float()
    batch = make_batch("2d", dtype=torch.float32)
    s = build_strategy(strategy, net, build_loss("l1"))
    with SavedTensorMeter() as meter:
        s.forward_backward(batch)
    return meter.peak_bytes


def test_saved_activation_bytes_flat_in_depth_except_end_to_end():
    e2e = [saved_peak("e2e", d) for d in (4, 16)]
    greedy = [saved_peak("greedy", d) for d in (4, 16)]
    invertible = [saved_peak("invertible", d, invertible=True) for d in (4, 16)]
    assert e2e[1] >= 3 * e2e[0]
    assert greedy[1] <= 1.05 * greedy[0]
    assert invertible[1] <= 1.05 * invertible[0]
    # checkpointing keeps one state per iteration: growth far below end-to-end's
    ckpt = [saved_peak("checkpoint", d) for d in (4, 16)]
    assert ckpt[1] - ckpt[0] <= 0.25 * (e2e[1] - e2e[0])


@pytest.mark.cuda
def test_cuda_greedy_peak_memory_below_a_third_of_end_to_end():
    from gleam_mri.meters import cuda_peak_memory

    device = torch.device("cuda")
    batch = make_batch("2d", dtype=torch.float32, shape=(256, 256)).to(device)
    peaks = {}
    for name in ("e2e", "greedy"):
        torch.manual_seed(0)
        cfg = ModelConfig(name="pgd", unrolls=16, features=64, blocks=5)
        net = build_model(cfg, "2d").to(device)
        s = build_strategy(name, net, build_loss("l1"))
        s.train_step(batch)  # warm-up: optimizer state allocated
        peaks[name] = cuda_peak_memory(lambda s=s: s.train_step(batch), device).peak_bytes
        del net, s
        torch.cuda.empty_cache()
    assert peaks["greedy"] < peaks["e2e"] / 3, peaks

"""MEL (memory-efficient learning): invertible training of the ordinary network by fixed-point
inversion, and the bounded network (``model.dc.step_max``, ``model.spectral_bound``) it needs."""

from __future__ import annotations

import pytest
import torch

from gleam_mri.models.builders import build_model, modl, pgd_resnet
from gleam_mri.models.dc import GradientDC
from gleam_mri.models.lipschitz import bound_spectral_norms_
from gleam_mri.schema import ConfigError
from gleam_mri.training.losses import build_loss
from gleam_mri.training.run_config import load_config
from gleam_mri.training.strategies import build_strategy
from models_for_tests import gradients, make_batch, make_net

pytestmark = pytest.mark.usefixtures("one_thread")


def mel_against_e2e(make, iters: int) -> tuple[float, float]:
    """MEL's gradient error relative to end to end on two copies ``make()`` of one network (the
    losses must agree), and its ``inversion_error``."""
    batch = make_batch("2d")
    nets = [make(), make()]
    ref = gradients("e2e", nets[0], batch)
    strategy = build_strategy(
        "invertible", nets[1], build_loss("mse"), inversion="fixed-point", fixed_point_iters=iters
    )
    metrics = strategy.forward_backward(batch)
    grads = {n: p.grad.clone() for n, p in nets[1].named_parameters()}
    assert metrics["loss"] == pytest.approx(ref[0], rel=1e-12)
    total = torch.sqrt(sum(g.norm() ** 2 for g in ref[1].values()))
    error = torch.sqrt(sum((grads[n] - g).norm() ** 2 for n, g in ref[1].items())) / total
    return float(error), metrics["inversion_error"]


def _mel_net(name: str, **dc):
    torch.manual_seed(0)
    build = pgd_resnet if name == "pgd" else modl
    return build("2d", 3, features=8, blocks=2, **dc).double()


@pytest.mark.parametrize("name", ["pgd", "modl"])
def test_fixed_point_inverse_rebuilds_the_input_of_an_iteration(name):
    """With a contractive step (PGD step 0.5) the fixed-point inverse converges: 40 iterations
    rebuild an iteration's input to 1e-6 in float64. MoDL's closed-form step inverse is as exact
    as the forward CG solve (its relative-residual tolerance): measured 1.9e-6, bound 1e-5."""
    from gleam_mri.models.unrolled import Problem

    batch = make_batch("2d")
    net = _mel_net(name, **({"step_init": 0.5} if name == "pgd" else {}))
    problem = Problem.from_batch(batch)
    x = problem.x0 + 0.1 * torch.randn_like(problem.x0)
    with torch.no_grad():
        out = net.iterations[0](x, problem)
        rebuilt = net.iterations[0].fixed_point_inverse(out, problem, 40)
    assert float((rebuilt - x).norm() / x.norm()) < (1e-6 if name == "pgd" else 1e-5)


@pytest.mark.parametrize("name", ["pgd", "modl"])
def test_mel_gradients_approach_end_to_end(name):
    """MEL (fixed-point inversion) on the ordinary network: same loss as end to end, gradients
    within 1% with 20 fixed-point iterations (measured 0.4% PGD, 0.14% MoDL); the rebuilt
    initial state's error is reported as ``inversion_error``."""
    error, inversion_error = mel_against_e2e(lambda: _mel_net(name), 20)
    assert error < 1e-2 and inversion_error >= 0
    with pytest.raises(ValueError, match="ordinary network"):
        build_strategy(
            "invertible",
            make_net("2d", 2, invertible=True),
            build_loss("l1"),
            inversion="fixed-point",
        )
    with pytest.raises(ValueError, match="no fixed_point_inverse"):
        build_strategy("invertible", make_net("2d", 2), build_loss("l1"), inversion="fixed-point")


# ------------------------------------------------------------------ the bounded network MEL needs


def test_bounded_step_stays_below_its_bound():
    dc = GradientDC(step_max=0.5)
    assert dc.step.item() == pytest.approx(0.25)  # default start: half the bound
    assert GradientDC(step_init=0.4, step_max=0.5).step.item() == pytest.approx(0.4)
    with torch.no_grad():
        dc.raw_step.fill_(50.0)
        assert dc.step.item() <= 0.5
    assert GradientDC().step.item() == pytest.approx(1.0)  # unbounded default unchanged
    with pytest.raises(ValueError, match="step_init must be < step_max"):
        GradientDC(step_init=0.5, step_max=0.5)


def test_gradient_step_inverse_is_exact_below_one_over_l():
    """CG on ``(I - a A^H A) x = z - a A^H y``: with ``a = 0.45`` (condition number <= 1.8) 30
    iterations rebuild the input to float64 rounding; measured about 1e-15."""
    from gleam_mri.models.unrolled import Problem

    problem = Problem.from_batch(make_batch("2d"))
    dc = GradientDC(step_init=0.45, step_max=0.5).double()
    x = problem.x0 + 0.1 * torch.randn_like(problem.x0)
    with torch.no_grad():
        rebuilt = dc.inverse(dc(x, problem.op, problem.y), problem.op, problem.y, 30)
    assert float((rebuilt - x).norm() / x.norm()) < 1e-10


def test_spectral_bound_caps_every_convolution():
    torch.manual_seed(0)
    net = pgd_resnet("2d", 2, features=8, blocks=2, spectral_bound=0.5)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 * 6  # per iteration: conv in, 2 blocks of 2, conv out
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2)
        assert sigma.item() <= 0.5 + 1e-6
    small = torch.nn.Conv2d(2, 2, 3)
    with torch.no_grad():
        small.weight.mul_(1e-3)
    before = small.weight.detach().clone()
    bound_spectral_norms_(small, 0.5)
    assert torch.equal(small.weight, before)  # below the bound: unchanged
    twin = pgd_resnet("2d", 2, features=8, blocks=2, spectral_bound=0.5)
    twin.load_state_dict(net.state_dict())  # a checkpoint of the bounded network loads


def test_bounded_network_from_config():
    cfg = load_config(None, ["model.spectral_bound=0.5", "model.dc.step_max=0.5"])
    net = build_model(cfg.model, "2d")
    assert net.iterations[0].dc.step_max == 0.5
    assert any("parametrizations" in name for name, _ in net.named_parameters())
    with pytest.raises(ConfigError, match=r"model\.spectral_bound"):
        load_config(None, ["model.spectral_bound=0"])


def _grown_mel_net(**model) -> torch.nn.Module:
    """``_mel_net("pgd")`` with each denoiser's last convolution 100x its near-identity start, so
    that the residuals are far from 0 (as after training)."""
    net = _mel_net("pgd", **model)
    with torch.no_grad():
        for iteration in net.iterations:
            conv = iteration.regularizer.net.conv_out
            bounded = hasattr(conv, "parametrizations")
            (conv.parametrizations.weight.original if bounded else conv.weight).mul_(100.0)
    return net


def test_mel_on_the_bounded_network_follows_end_to_end():
    """Grown denoisers, 10 fixed-point iterations. Bounded network (step <= 0.5, convolutions of
    spectral norm <= 0.5): MEL rebuilds the initial state and its gradients equal end to end's to
    1e-6 (measured 6e-8 and 6e-9). The GLEAM network (step 1 / L, unbounded): inversion error
    above 1 (measured 41), gradients 16% off."""
    error, inversion_error = mel_against_e2e(
        lambda: _grown_mel_net(step_max=0.5, spectral_bound=0.5), 10
    )
    assert error < 1e-6 and inversion_error < 1e-6
    error, inversion_error = mel_against_e2e(_grown_mel_net, 10)
    assert error > 1e-2 and inversion_error > 1

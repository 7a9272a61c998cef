"""SavedTensorMeter and the saved-activation memory of each strategy as depth grows."""

from __future__ import annotations

import pytest
import torch

from gleam_mri.meters import SavedTensorMeter, cuda_peak_memory
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy
from models_for_tests import make_batch, make_net

DEPTHS = (4, 8, 16)


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- the meter


def test_meter_counts_live_saved_bytes_and_releases_them():
    x = torch.randn(1000, requires_grad=True)  # a leaf: exists anyway, not counted
    with SavedTensorMeter() as meter:
        y = x * x  # saves x twice: leaf, ignored
        assert meter.current_bytes == 0
        z = y.exp()  # saves its output (1000 float32)
        w = z.exp()  # saves its output
        assert meter.current_bytes == 8000
        w.sum().backward()
    assert meter.peak_bytes == 8000
    assert meter.total_bytes == 8000
    del y, z, w  # the graph (and its saved tensors) goes away
    assert meter.current_bytes == 0
    assert torch.allclose(x.grad, 2 * x * torch.exp(x * x) * torch.exp(torch.exp(x * x)))


def test_meter_counts_each_storage_once():
    x = torch.randn(500, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp()  # saves y (2000 bytes)
        a = y.sin()  # saves y again: same storage
        b = y[:100].cos()  # saves a view of y: same storage
        assert meter.current_bytes == 2000
        (a.sum() + b.sum()).backward()
    assert meter.peak_bytes == 2000
    del y, a, b
    assert meter.current_bytes == 0


def test_meter_releases_after_backward_without_retain():
    x = torch.randn(256, requires_grad=True)
    with SavedTensorMeter() as meter:
        loss = x.exp().exp().sum()
        assert meter.current_bytes == 2 * 256 * 4
        loss.backward()  # frees the saved tensors of the graph
        assert meter.current_bytes == 0
    assert meter.peak_bytes == 2 * 256 * 4


def test_meter_cannot_be_entered_twice():
    meter = SavedTensorMeter()
    with meter, pytest.raises(RuntimeError, match="already active"), meter:
        pass


def test_cuda_peak_memory_rejects_cpu():
    with pytest.raises(ValueError, match="CUDA device"):
        cuda_peak_memory(lambda: None, "cpu")


@pytest.mark.cuda
def test_cuda_peak_memory_measures_allocation():
    device = torch.device("cuda")
    result = cuda_peak_memory(lambda: torch.empty(2**20, device=device).sum(), device)
    assert result.peak_bytes - result.start_bytes >= 4 * 2**20
    assert torch.isfinite(result.result)


# ----------------------------------------------------------------------------- strategies


def saved_peak(name: str, depth: int, **kwargs) -> int:
    """Peak saved-activation bytes of one train step of a ``depth``-iteration 2D toy net."""
    net = make_net("2d", depth, invertible=name == "invertible", channels=8, dtype=torch.float32)
    batch = make_batch("2d", torch.float32, shape=(16, 16))
    strategy = build_strategy(name, net, build_loss("l1"), **kwargs)
    with SavedTensorMeter() as meter:
        strategy.train_step(batch)
    assert meter.current_bytes == 0, "the graph of a train step must be freed by its end"
    return meter.peak_bytes


@pytest.fixture(scope="module")
def e2e_peaks() -> dict[int, int]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {d: saved_peak("e2e", d) for d in DEPTHS}
    finally:
        torch.set_num_threads(threads)


def test_end_to_end_grows_linearly(e2e_peaks):
    p = e2e_peaks
    assert p[16] >= 3 * p[4]
    # linear: the same increment per added iteration
    assert (p[16] - p[8]) == pytest.approx(2 * (p[8] - p[4]), rel=1e-6)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("greedy", {}),  # modules = depth
        ("greedy", {"mode": "sequential"}),
        ("invertible", {}),
    ],
)
def test_flat_in_depth(name, kwargs, e2e_peaks):
    peaks = {d: saved_peak(name, d, **kwargs) for d in DEPTHS}
    assert peaks[16] <= 1.2 * peaks[4], peaks
    assert peaks[16] < e2e_peaks[16] / 3, (peaks, e2e_peaks)


@pytest.mark.parametrize("every", [1, 4])
def test_checkpoint_keeps_one_state_per_segment(every, e2e_peaks):
    """Only the segment inputs grow with depth (activations are recomputed in backward)."""
    state_bytes = 2 * 16 * 16 * 8  # B x H x W complex64, the batch of make_batch("2d")
    peaks = {d: saved_peak("checkpoint", d, every=every) for d in DEPTHS}
    for d in (8, 16):
        extra_segments = d // every - 4 // every
        assert peaks[d] - peaks[4] == extra_segments * state_bytes, peaks
    assert peaks[16] - peaks[4] < 0.25 * (e2e_peaks[16] - e2e_peaks[4])

"""LiveTensorMeter: bytes of the storages a region creates, while they live, on any device."""

from __future__ import annotations

import contextlib
import weakref

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gleam_mri.meters import LiveTensorMeter, SavedTensorMeter, cuda_peak_memory, storage_bytes
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy
from models_for_tests import make_batch, make_net

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- the meter


def test_counts_created_storages_exactly():
    outside = torch.randn(100)  # exists before the region: never counted, nor its views
    with LiveTensorMeter() as meter:
        a = torch.zeros(1000)  # 4000 bytes
        b = torch.zeros(500, dtype=torch.float64)  # 4000 bytes
        assert meter.current_bytes == 8000
        view = a[:10]  # views and in-place ops add nothing
        a.add_(1.0)
        a.view(10, 100).t()
        b.unsqueeze(0)
        outside[:3]
        outside.mul_(2.0)
        assert meter.current_bytes == 8000
        c = torch.zeros(10, dtype=torch.complex64)  # complex: its full 80 bytes
        torch.view_as_real(c)
        assert meter.current_bytes == 8080
        del a  # its view keeps the storage alive
        assert meter.current_bytes == 8080
        del view
        assert meter.current_bytes == 4080
        d = outside * 2  # new memory from an old tensor: 400 bytes
        assert meter.current_bytes == 4480
        del b, d
        assert meter.current_bytes == 80
    assert meter.peak_bytes == 8080
    assert meter.total_bytes == 8480
    del c  # freed after the region: still released
    assert meter.current_bytes == 0
    assert meter.peak_by_device == {"cpu": 8080}


def test_tuple_outputs_and_non_tensor_results():
    x = torch.randn(64)
    with LiveTensorMeter() as meter:
        values, indices = torch.sort(x)  # float32 values and int64 indices
        assert meter.current_bytes == 64 * 4 + 64 * 8
        best = torch.max(x.view(8, 8), dim=1)  # a named tuple of 8 floats and 8 int64
        assert meter.current_bytes == 768 + 8 * 4 + 8 * 8
        parts = torch.split(values, 16)  # a list of views
        rows = torch.unbind(indices.view(4, 16))  # a tuple of views
        assert meter.current_bytes == 864
        assert isinstance(x.sum().item(), float)  # a Python number; the 0-d sum is freed
        assert meter.current_bytes == 864
        t = torch.tensor([1.0, 2.0, 3.0])  # built from data inside the region
        assert meter.current_bytes == 876
    assert len(parts) == 4 and len(rows) == 4 and best.values.shape == (8,) and t.shape == (3,)


def test_out_arguments_and_resizes_count_the_new_size():
    x = torch.randn(100)
    with LiveTensorMeter() as meter:
        out = torch.empty(0)  # no bytes yet
        torch.add(x, 1.0, out=out)  # the op gives it 400 bytes
        assert meter.current_bytes == 400
        out.resize_(1000)  # reallocated: 4000 bytes instead of 400
        assert meter.current_bytes == 4000
        x.resize_(200)  # an old tensor's new 800 bytes are new memory
        assert meter.current_bytes == 4800
    del out
    assert meter.current_bytes == 800
    del x
    assert meter.current_bytes == 0
    assert meter.peak_bytes == 4800


def test_keeps_nothing_alive():
    with LiveTensorMeter() as meter:
        a = torch.ones(256)
        b = a.exp()
    refs = [weakref.ref(a), weakref.ref(a.untyped_storage()), weakref.ref(b)]
    assert meter.current_bytes == 2048
    del a, b
    assert all(ref() is None for ref in refs)
    assert meter.current_bytes == 0
    assert meter.peak_bytes == 2048


def test_sees_backward_and_checkpoint_recomputation():
    """Saved-tensor hooks see nothing here; the live meter sees the recomputed activations."""
    x = torch.randn(1000, requires_grad=True)  # a leaf from before the region
    with LiveTensorMeter() as live, SavedTensorMeter() as saved:
        y = checkpoint(lambda v: v.exp().exp(), x, use_reentrant=False)
        assert live.current_bytes == 4000  # y: the inner activation was dropped
        y.sum().backward()
    assert saved.peak_bytes == 0
    assert live.peak_bytes >= 3 * 4000  # y with both activations recomputed in backward
    assert live.current_bytes == 8000  # what the region leaves behind: y and x.grad
    assert torch.allclose(x.grad, torch.exp(x) * torch.exp(torch.exp(x)))


def test_device_filter_and_nesting():
    with (
        LiveTensorMeter(device="cuda") as cuda_only,
        LiveTensorMeter("cpu") as cpu_only,
        LiveTensorMeter() as every,
    ):
        a = torch.ones(100)
        torch.empty(1000, device="meta")  # no memory: never counted
    assert cuda_only.peak_bytes == 0 and cuda_only.peak_by_device == {}
    assert cpu_only.peak_bytes == every.peak_bytes == 400
    assert every.current_by_device == {"cpu": 400}
    del a


def test_reset_peak_baseline_and_reentry():
    with LiveTensorMeter(baseline=1000) as meter:
        a = torch.ones(100)
        torch.ones(1000)  # freed at once
        assert meter.peak_bytes == 4400
        meter.reset_peak()
        assert meter.peak_bytes == meter.current_bytes == 400
        assert meter.peak_by_device == {"cpu": 400}
    assert meter.absolute_peak_bytes == 1400
    with meter, pytest.raises(RuntimeError, match="already active"), meter:
        pass
    del a


def test_storage_bytes_counts_each_storage_once():
    net = nn.Linear(4, 3)  # 12 + 3 floats
    x = torch.zeros(10)
    assert storage_bytes(net, x, x[:5], [x.view(2, 5)], {"x": x}) == 60 + 40
    assert storage_bytes(x, device="cuda") == 0
    net(torch.ones(2, 4)).sum().backward()
    assert storage_bytes(net) == 2 * 60  # with the gradients
    opt = torch.optim.Adam(net.parameters())
    opt.step()
    assert storage_bytes(opt) == 2 * 60 + 2 * 4  # exp_avg, exp_avg_sq, a float32 step each
    batch = make_batch("2d", torch.float32)
    fields = [batch.kspace, batch.mask, batch.maps, batch.target, batch.scale]
    assert storage_bytes(batch) == sum(t.untyped_storage().nbytes() for t in fields)


# ----------------------------------------------------------------------------- strategies

CONFIGS = {
    ("e2e", 2): {},
    ("e2e", 4): {},
    ("e2e", 6): {},
    ("checkpoint", 6): {"every": 1},
    ("greedy", 2): {},  # modules = depth: one iteration per module
    ("greedy", 6): {},
    ("invertible", 2): {},
    ("invertible", 6): {},
}


def step_peaks(name: str, depth: int, **kwargs) -> tuple[int, int]:
    """(live peak, saved-tensor peak) in bytes of one train step of a 2D toy net."""
    net = make_net("2d", depth, invertible=name == "invertible", channels=8, dtype=torch.float32)
    batch = make_batch("2d", torch.float32, shape=(16, 16))
    strategy = build_strategy(name, net, build_loss("l1"), **kwargs)
    with LiveTensorMeter() as live, SavedTensorMeter() as saved:
        strategy.train_step(batch)
    return live.peak_bytes, saved.peak_bytes


@pytest.fixture(scope="module")
def peaks() -> dict[tuple[str, int], tuple[int, int]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {key: step_peaks(*key, **kwargs) for key, kwargs in CONFIGS.items()}
    finally:
        torch.set_num_threads(threads)


def test_checkpoint_live_peak_sees_the_recomputed_segment(peaks):
    """Measured (16x16, 8 channels, float32): checkpoint every=1 at depth 6 peaks at 90,704 live
    bytes while its saved tensors peak at 30,240; e2e at depth 6 peaks at 189,008 live bytes and
    adds 24,576 per iteration."""
    live, saved = peaks["checkpoint", 6]
    e2e_per_iteration = (peaks["e2e", 6][0] - peaks["e2e", 2][0]) // 4
    assert live - saved >= e2e_per_iteration  # at least one recomputed segment
    assert live < peaks["e2e", 6][0] / 1.5


def test_end_to_end_grows_with_depth_and_greedy_stays_flat(peaks):
    """Measured live peaks, depth 2 -> 6: e2e 90,704 -> 189,008 (linear), greedy 75,516 -> 80,300
    and invertible 124,660 -> 129,444 (the gradients of the extra iterations' parameters)."""
    e2e = {d: peaks["e2e", d][0] for d in (2, 4, 6)}
    assert e2e[6] > 1.8 * e2e[2]
    assert e2e[6] - e2e[4] == e2e[4] - e2e[2]  # the same activations per added iteration
    for name in ("greedy", "invertible"):
        assert peaks[name, 6][0] < 1.3 * peaks[name, 2][0], (name, peaks)


@pytest.mark.parametrize(
    ("name", "kwargs"), [("e2e", {}), ("checkpoint", {"every": 2}), ("greedy", {})]
)
def test_meter_changes_no_result(name, kwargs):
    runs = []
    for metered in (False, True):
        net = make_net("2d", 4, channels=8, dtype=torch.float32)  # the same seed: same weights
        batch = make_batch("2d", torch.float32, shape=(16, 16))
        strategy = build_strategy(name, net, build_loss("l1"), **kwargs)
        with LiveTensorMeter() if metered else contextlib.nullcontext():
            metrics = [strategy.train_step(batch) for _ in range(2)]
        runs.append((metrics, [p.detach().clone() for p in net.parameters()]))
    (metrics0, params0), (metrics1, params1) = runs
    assert metrics0 == metrics1
    assert all(torch.equal(a, b) for a, b in zip(params0, params1, strict=True))


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
def test_counts_cuda_storages_per_device():
    device = torch.device("cuda")
    with LiveTensorMeter("cuda") as cuda_only, LiveTensorMeter() as every:
        a = torch.ones(1000, device=device)
        b = torch.ones(10)
    assert cuda_only.current_bytes == 4000
    assert every.current_by_device == {str(a.device): 4000, "cpu": 40}
    del a, b
    assert every.current_bytes == 0


@pytest.mark.cuda
def test_live_peak_matches_cuda_allocator():
    """The meter's peak over a CUDA train step equals the allocator's, less what was there before.

    What separates them: the allocator rounds each block up to 512 bytes (tiny tensors: the scalar
    step sizes and their gradients, well under 1% here) and counts the workspaces that operations
    allocate and free inside themselves (cuDNN, cuFFT), which the meter cannot see; 64
    iterations make the activations (about 25 MB) dwarf any one workspace. A warm-up step creates
    the optimizer state and the library handles first, and the gradients are dropped, so the
    measured step frees nothing that existed before it.
    """
    device = torch.device("cuda")
    net = make_net("2d", 64, channels=8, dtype=torch.float32).to(device)
    batch = make_batch("2d", torch.float32, shape=(64, 64)).to(device)
    strategy = build_strategy("e2e", net, build_loss("l1"))
    strategy.train_step(batch)
    for p in net.parameters():
        p.grad = None
    with LiveTensorMeter(device) as meter:
        measured = cuda_peak_memory(lambda: strategy.train_step(batch), device)
    allocated = measured.peak_bytes - measured.start_bytes
    assert meter.peak_bytes > 10 * 2**20
    assert meter.peak_bytes == pytest.approx(allocated, rel=0.1), (meter.peak_bytes, allocated)
    assert set(meter.peak_by_device) == {f"cuda:{torch.cuda.current_device()}"}

"""Pipelined greedy training: 2 gloo stages on CPU match single-process Greedy, train, fail fast."""

from __future__ import annotations

import os
import socket
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies.greedy import Greedy
from gleam_mri.training.strategies.pipeline import PipelineGreedy
from models_for_tests import make_batch, make_net

WORLD = 2
MODULES = 4
LR = 3e-3
TIMEOUT = 3.0  # seconds: point-to-point timeout of the stages
INIT_TIMEOUT = 30.0  # seconds: rendezvous (spawned workers may start unevenly on a busy machine)


def batch_for_step(step: int):
    """The shared, seeded batch source (the same batch on every rank)."""
    return make_batch("2d", seed=1000 + step)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(
    rank: int, port: int, out: str, steps: int, staleness: int, fault_at: int, fault: str
) -> None:
    """One stage; writes ``rank<r>.pt`` (owned params, metrics) or ``rank<r>.err`` on failure.

    Rank 1 exits (``fault="exit"``) or hangs (``"hang"``) when asked for batch ``fault_at``.
    """
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    init_timeout = timedelta(seconds=INIT_TIMEOUT)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=init_timeout)
    net = make_net("2d", depth=4)
    stage = PipelineGreedy(net, build_loss("mse"), modules=MODULES, lr=LR, timeout=TIMEOUT)

    def source(step: int):
        if rank == 1 and step == fault_at:
            Path(out, "fault").write_text(repr(time.time()))
            if fault == "exit":
                os._exit(3)
            time.sleep(10 * TIMEOUT)
        return batch_for_step(step)

    try:
        history = stage.train(steps, source, staleness=staleness)
    except Exception as err:
        Path(out, f"rank{rank}.err").write_text(f"{time.time()!r}\n{err}\n{traceback.format_exc()}")
        raise
    torch.save({"state": stage.state_dict(), "history": history}, Path(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def run_stages(
    tmp_path: Path, steps: int, staleness: int, fault_at: int = -1, fault: str = ""
) -> list[int | None]:
    """Run both stages in spawned processes; exit codes by rank (``None``: still running)."""
    ctx = mp.start_processes(
        worker,
        args=(free_port(), str(tmp_path), steps, staleness, fault_at, fault),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 45.0
    for proc in ctx.processes[:1] if fault == "hang" else ctx.processes:
        proc.join(max(0.0, deadline - time.monotonic()))
    codes = [proc.exitcode for proc in ctx.processes]
    for proc in ctx.processes:
        if proc.is_alive():
            proc.kill()
            proc.join()
    return codes


def stage_results(tmp_path: Path) -> tuple[dict[str, torch.Tensor], list[list[dict]]]:
    params, histories = {}, []
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["state"]["modules"] == [2 * rank, 2 * rank + 1]  # balanced, contiguous
        assert not params.keys() & result["state"]["params"].keys()
        params.update(result["state"]["params"])
        histories.append(result["history"])
    return params, histories


def greedy_reference(steps: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    net = make_net("2d", depth=4)
    greedy = Greedy(net, build_loss("mse"), modules=MODULES, lr=LR)
    losses = [greedy.train_step(batch_for_step(t))["loss"] for t in range(steps)]
    return {n: p.detach() for n, p in net.named_parameters()}, losses


def check_equals_greedy(tmp_path: Path, steps: int) -> list[list[dict]]:
    """Both stages' parameters and last-module losses equal single-process Greedy's."""
    params, histories = stage_results(tmp_path)
    reference, ref_losses = greedy_reference(steps)
    assert params.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(params[name], value, rtol=1e-10, atol=1e-10, msg=name)
    initial = dict(make_net("2d", depth=4).named_parameters())
    assert all(not torch.equal(params[n], initial[n]) for n in params)  # every module trained
    assert [h["step"] for h in histories[1]] == list(range(steps))
    last = [h[f"loss/module_{MODULES - 1}"] for h in histories[1]]
    assert last == pytest.approx(ref_losses, rel=1e-10)
    return histories


@pytest.mark.usefixtures("one_thread")
def test_synchronous_pipeline_equals_single_process_greedy(tmp_path):
    assert run_stages(tmp_path, steps=5, staleness=0) == [0, 0]
    check_equals_greedy(tmp_path, steps=5)


@pytest.mark.usefixtures("one_thread")
def test_overlapped_pipeline_converges_and_still_equals_greedy(tmp_path):
    steps = 30
    assert run_stages(tmp_path, steps, staleness=1) == [0, 0]
    histories = check_equals_greedy(tmp_path, steps)  # states are sent before each update
    last = torch.tensor([h[f"loss/module_{MODULES - 1}"] for h in histories[1]])
    first_module = torch.tensor([h["loss/module_0"] for h in histories[0]])
    assert last[-5:].mean() < 0.7 * last[:5].mean()
    assert first_module[-5:].mean() < first_module[:5].mean()


@pytest.mark.parametrize("fault", ["exit", "hang"])
def test_dead_or_hung_stage_makes_peer_exit_with_clear_error(tmp_path, fault):
    codes = run_stages(tmp_path, steps=20, staleness=1, fault_at=2, fault=fault)
    assert codes[1] == (3 if fault == "exit" else None)  # a hung rank is killed by run_stages
    assert codes[0] not in (0, None)  # exited, with an error
    died = float((tmp_path / "fault").read_text())
    stamp, message = (tmp_path / "rank0.err").read_text().split("\n", 1)
    assert "rank 1" in message.splitlines()[0]
    assert float(stamp) - died < 2 * TIMEOUT
    assert not (tmp_path / "rank0.pt").exists()


def test_bad_configuration_raises():
    loss = build_loss("mse")
    with pytest.raises(NotImplementedError, match="prologue"):
        PipelineGreedy(make_net("2d", 4, prologue=True), loss, rank=0, world_size=2)
    with pytest.raises(ValueError, match="modules >= world size"):
        PipelineGreedy(make_net("2d", 4), loss, modules=2, rank=0, world_size=3)
    with pytest.raises(ValueError, match="timeout"):
        PipelineGreedy(make_net("2d", 4), loss, rank=0, world_size=1, timeout=0)
    stage = PipelineGreedy(make_net("2d", 4), loss, modules=4, rank=1, world_size=2)
    assert stage.module_ids == [2, 3]
    assert stage.parameter_names()[0].startswith("iterations.2.")
    with pytest.raises(ValueError, match="staleness"):
        stage.train(1, batch_for_step, staleness=-1)

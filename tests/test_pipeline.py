"""Pipelined greedy training: 2 gloo stages on CPU, each a process running the one training
driver (``fit``), match single-process Greedy, resume, train and fail fast."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from gleam_mri.training.data import source_data
from gleam_mri.training.loop import read_metrics_log, train
from gleam_mri.training.losses import build_loss
from gleam_mri.training.run_config import load_config
from gleam_mri.training.strategies.greedy import Greedy
from gleam_mri.training.strategies.pipeline import PipelineGreedy, PipelineLayout
from models_for_tests import make_batch, make_net

STAGES = 2
MODULES = 4
LR = 3e-3
TIMEOUT = 3.0  # seconds: point-to-point timeout of the stages


def batch_for_step(step: int):
    """The shared, seeded batch source (the same batch on every rank)."""
    return make_batch("2d", seed=1000 + step)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_config(out: str, steps: int, staleness: int, replicas: int, options: dict):
    """The run config of every rank: the pipeline over ``MODULES`` modules, Adam at ``LR`` on the
    mse loss, a log record every step, checkpoints only at the end; ``options``: optimizer
    options (``amp``, ``scheduler``, ``scheduler_kwargs``)."""
    sets = ["strategy.name=pipeline", f"strategy.modules={MODULES}", f"strategy.timeout={TIMEOUT}"]
    sets += [f"strategy.staleness={staleness}", f"strategy.replicas={replicas}"]
    sets += ["train.loss=mse", f"optim.lr={LR}", f"train.steps={steps}", "train.val_every=0"]
    sets += ["train.ckpt_every=0", "train.log_every=1", "train.tensorboard=false"]
    sets += ["train.device=cpu", f"train.out_dir={Path(out, 'run')}", "data.batch_size=2"]
    sets += [f"optim.{key}={value}" for key, value in options.items()]
    return load_config(None, sets)


def history(out: str, stage: int) -> list[dict]:
    """The per-step training records this stage's replica 0 logged, as ``{"step" (0-based),
    "loss", "loss/module_<m>", ...}``."""
    name = "metrics.jsonl" if stage == STAGES - 1 else f"metrics_stage{stage}.jsonl"
    records = read_metrics_log(Path(out, "run"), name)
    return [
        {"step": r["step"] - 1, **{k[len("train/") :]: v for k, v in r.items() if k != "step"}}
        for r in records
        if any(k.startswith("train/") for k in r)
    ]


def worker(
    rank: int,
    port: int,
    out: str,
    world: int,
    replicas: int,
    steps: int,
    staleness: int,
    fault_at: int,
    fault: str,
    resume_at: int,
    prologue: bool,
    options: dict,
) -> None:
    """One rank (under the environment torchrun would give it); writes ``rank<r>.pt`` (its stage
    state and, on replica 0, its logged history) or ``rank<r>.err`` on failure.

    Rank 1 exits (``fault="exit"``) or hangs (``"hang"``) when asked for batch ``fault_at``.
    ``resume_at > 0``: train that many steps, then resume the run from its stage checkpoints in
    a new ``fit`` with a fresh network (what a restarted job does).
    """
    torch.set_num_threads(1)
    environment = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank)}
    os.environ.update(environment, WORLD_SIZE=str(world), LOCAL_RANK=str(rank))

    def source(step: int):
        if rank == 1 and step == fault_at:
            Path(out, "fault").write_text(repr(time.time()))
            if fault == "exit":
                os._exit(3)
            time.sleep(10 * TIMEOUT)
        return batch_for_step(step)  # the whole batch: the driver takes this replica's shard

    def run_until(total: int, resume: bool):
        cfg = stage_config(out, total, staleness, replicas, options)
        net = make_net("2d", depth=4, prologue=prologue)
        return train(cfg, resume, progress=False, data=source_data("2d", source), net=net)

    try:
        if resume_at:
            run_until(resume_at, resume=False)
        run = run_until(steps, resume=bool(resume_at))
    except Exception as err:
        Path(out, f"rank{rank}.err").write_text(f"{time.time()!r}\n{err}\n{traceback.format_exc()}")
        raise
    stage = run.strategy
    logged = history(out, stage.stage) if stage.replica == 0 else []
    torch.save({"state": stage.state_dict(), "history": logged}, Path(out, f"rank{rank}.pt"))


def run_stages(
    tmp_path: Path,
    steps: int,
    staleness: int,
    fault_at: int = -1,
    fault: str = "",
    replicas: int = 1,
    resume_at: int = 0,
    prologue: bool = False,
    options: dict | None = None,
) -> list[int | None]:
    """Run ``STAGES x replicas`` ranks in spawned processes; exit codes by rank (None: alive)."""
    world = STAGES * replicas
    ctx = mp.start_processes(
        worker,
        args=(
            free_port(),
            str(tmp_path),
            world,
            replicas,
            steps,
            staleness,
            fault_at,
            fault,
            resume_at,
            prologue,
            options or {},
        ),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 90.0
    for proc in ctx.processes[:1] if fault == "hang" else ctx.processes:
        proc.join(max(0.0, deadline - time.monotonic()))
    codes = [proc.exitcode for proc in ctx.processes]
    for proc in ctx.processes:
        if proc.is_alive():
            proc.kill()
            proc.join()
    return codes


def stage_results(
    tmp_path: Path, replicas: int = 1
) -> tuple[dict[str, torch.Tensor], list[list[dict]]]:
    """Parameters of every stage (replicas must agree exactly) and replica 0's histories."""
    params, histories = {}, []
    for stage in range(STAGES):
        results = [torch.load(tmp_path / f"rank{stage * replicas + r}.pt") for r in range(replicas)]
        state = results[0]["state"]
        assert state["modules"] == [2 * stage, 2 * stage + 1]  # balanced, contiguous
        for other in results[1:]:  # replicas of a stage hold identical parameters
            assert other["state"]["params"].keys() == state["params"].keys()
            for name, value in state["params"].items():
                assert torch.equal(other["state"]["params"][name], value), name
        assert not params.keys() & state["params"].keys()
        params.update(state["params"])
        histories.append(results[0]["history"])
    return params, histories


def greedy_reference(
    steps: int, prologue: bool, options: dict | None = None
) -> tuple[dict[str, torch.Tensor], list[float]]:
    net = make_net("2d", depth=4, prologue=prologue)
    greedy = Greedy(net, build_loss("mse"), modules=MODULES, lr=LR, **(options or {}))
    losses = [greedy.train_step(batch_for_step(t))["loss"] for t in range(steps)]
    return {n: p.detach() for n, p in net.named_parameters()}, losses


def check_equals_greedy(
    tmp_path: Path,
    steps: int,
    replicas: int = 1,
    prologue: bool = False,
    options: dict | None = None,
) -> list[list[dict]]:
    """Both stages' parameters (and, with one replica, last-module losses) equal Greedy's."""
    params, histories = stage_results(tmp_path, replicas)
    reference, ref_losses = greedy_reference(steps, prologue, options)
    assert params.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(params[name], value, rtol=1e-10, atol=1e-10, msg=name)
    initial = dict(make_net("2d", depth=4, prologue=prologue).named_parameters())
    assert all(not torch.equal(params[n], initial[n]) for n in params)  # every module trained
    assert [h["step"] for h in histories[1]] == list(range(steps))
    if replicas == 1:  # with replicas, each logs the loss of its own shard
        last = [h[f"loss/module_{MODULES - 1}"] for h in histories[1]]
        assert last == pytest.approx(ref_losses, rel=1e-10)
    return histories


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("prologue", [False, True], ids=["plain", "learned-maps-prologue"])
def test_synchronous_pipeline_equals_single_process_greedy(tmp_path, prologue):
    """With a prologue (learned maps, trained by module 0) stage 0 sends the maps along."""
    assert run_stages(tmp_path, steps=5, staleness=0, prologue=prologue) == [0, 0]
    check_equals_greedy(tmp_path, steps=5, prologue=prologue)


@pytest.mark.usefixtures("one_thread")
def test_overlapped_pipeline_converges_and_still_equals_greedy(tmp_path):
    steps = 30
    assert run_stages(tmp_path, steps, staleness=1) == [0, 0]
    histories = check_equals_greedy(tmp_path, steps)  # states are sent before each update
    last = torch.tensor([h[f"loss/module_{MODULES - 1}"] for h in histories[1]])
    first_module = torch.tensor([h["loss/module_0"] for h in histories[0]])
    assert last[-5:].mean() < 0.7 * last[:5].mean()
    assert first_module[-5:].mean() < first_module[:5].mean()


@pytest.mark.usefixtures("one_thread")
def test_bf16_autocast_and_schedulers_equal_single_process_greedy(tmp_path):
    """The same options as the single-process strategies: bf16 autocast, an LR schedule."""
    options = {"amp": True, "scheduler": "StepLR", "scheduler_kwargs": {"step_size": 2}}
    assert run_stages(tmp_path, steps=5, staleness=1, options=options) == [0, 0]
    check_equals_greedy(tmp_path, steps=5, options=options)
    schedulers = torch.load(tmp_path / "rank0.pt")["state"]["schedulers"]
    assert len(schedulers) == 2  # one per owned module, stepped 5 times: 2 decays of 0.1
    assert [sd["_last_lr"] for sd in schedulers] == [pytest.approx([LR * 0.1**2])] * 2


@pytest.mark.usefixtures("one_thread")
def test_two_stages_times_two_replicas_equal_single_process_greedy(tmp_path):
    """4 ranks: each replica trains on half of every batch; averaged gradients = full batch."""
    assert run_stages(tmp_path, steps=4, staleness=1, replicas=2) == [0, 0, 0, 0]
    check_equals_greedy(tmp_path, steps=4, replicas=2)


@pytest.mark.usefixtures("one_thread")
def test_restored_stage_state_continues_exactly(tmp_path):
    """Stop after 3 steps, restore fresh stages from state_dict, 3 more = 6 uninterrupted."""
    assert run_stages(tmp_path, steps=6, staleness=1, resume_at=3) == [0, 0]
    histories = check_equals_greedy(tmp_path, steps=6)
    assert [h["step"] for h in histories[0]] == list(range(6))


def test_layout_is_stage_major():
    layout = PipelineLayout.from_world(6, replicas=2)
    assert (layout.stages, layout.replicas) == (3, 2)
    assert [layout.position(r) for r in range(6)] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert layout.stage_ranks(1) == [2, 3]
    with pytest.raises(ValueError, match="multiple of replicas"):
        PipelineLayout.from_world(5, replicas=2)


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
    with pytest.raises(ValueError, match="modules >= stages"):
        PipelineGreedy(make_net("2d", 4), loss, modules=2, rank=0, world_size=3)
    with pytest.raises(ValueError, match="timeout"):
        PipelineGreedy(make_net("2d", 4), loss, rank=0, world_size=1, timeout=0)
    stage = PipelineGreedy(make_net("2d", 4), loss, modules=4, rank=1, world_size=2)
    assert stage.module_ids == [2, 3]
    assert stage.parameter_names()[0].startswith("iterations.2.")
    with pytest.raises(ValueError, match="staleness"):
        PipelineGreedy(make_net("2d", 4), loss, modules=4, rank=1, world_size=2, staleness=-1)


GROUP_LIFETIME = """
import weakref
import torch
import torch.distributed as dist
from gleam_mri.training.distributed import process_group

with process_group("cpu", 5.0):
    group = weakref.ref(dist.group.WORLD)
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # the first optimizer of the process
assert group() is None, "the process group outlived process_group()"
"""


def test_process_group_is_gone_when_its_context_ends():
    """A group kept alive past destroy_process_group keeps its gloo threads into interpreter
    shutdown, where one still releasing a collective aborts the process (SIGABRT at exit).
    A fresh interpreter: the first optimizer imports torch modules that can hold the group."""
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = str(free_port())
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    done = subprocess.run(
        [sys.executable, "-c", GROUP_LIFETIME],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

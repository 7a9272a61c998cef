"""What is truly distributed about a run: the process group, and gathering onto rank 0.

A distributed strategy (``Strategy.distributed``; pipelined GLEAM) trains inside
:func:`process_group`, started by ``torchrun`` (gloo on CPU, NCCL on GPU); the run driver
(:func:`gleam_mri.training.loop.fit`) is the same as for a single process. One machine, N
processes::

    torchrun --standalone --nproc-per-node N -m gleam_mri.cli train CONFIG \\
        --set strategy.name=pipeline --set strategy.modules=8 --set strategy.replicas=1
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["elastic_restart", "gather_to_first", "process_group"]


def elastic_restart() -> int:
    """How many times ``torchrun``'s elastic agent restarted this worker group (0: first try).

    ``torchrun --max-restarts N`` restarts every worker when one fails (dies, or stops with an
    error such as a peer timeout); a restarted worker resumes from the checkpoints.
    """
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


@contextmanager
def process_group(device: str, peer_timeout: float) -> Iterator[torch.device]:
    """Initialise the default process group of a ``torchrun`` worker; yields its device.

    ``device``: ``train.device`` (``"cpu"`` forces gloo; otherwise NCCL on ``cuda:LOCAL_RANK``
    when CUDA is available). The group's own timeout is ``max(60 s, 2 x peer_timeout)``.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError(
            "this strategy runs one process per stage and replica: start it with "
            "torchrun --standalone --nproc-per-node N -m gleam_mri.cli train CONFIG ..."
        )
    cuda = torch.cuda.is_available() and device != "cpu"
    timeout = timedelta(seconds=max(60.0, 2 * peer_timeout))
    if cuda:  # NCCL's work.wait(timeout) blocks and raises only in blocking-wait mode (untested)
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    backend = "nccl" if cuda else "gloo"
    # Building the first optimizer imports torch._dynamo, and with it torch.distributed modules
    # whose default arguments are bound to ``dist.group.WORLD`` at import time. Imported while
    # the group exists, they keep it alive after destroy_process_group: its gloo threads then
    # outlive the interpreter, and one still releasing the last collective's tensors aborts the
    # process at exit ("terminate called without an active exception"). Import them first.
    from torch import _dynamo  # noqa: F401

    store = _restart_store(timeout)
    if store is None:
        dist.init_process_group(backend, timeout=timeout)
    else:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    try:
        if cuda:
            local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(local)
            yield local
        else:
            yield torch.device("cpu")
    finally:
        dist.destroy_process_group()


def _restart_store(timeout: timedelta) -> dist.Store | None:
    """The rendezvous store of this attempt, under torchrun's shared agent store; else ``None``.

    torchrun (``TORCHELASTIC_USE_AGENT_STORE=True``, the default) hands every attempt of the
    worker group the same TCPStore, and the default group's keys carry no attempt number: after
    a restart a worker can read a peer's address from the previous attempt and fail with "Gloo
    connectFullMesh failed ... Connection refused". A prefix per attempt keeps them apart.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    client = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        int(os.environ["WORLD_SIZE"]),
        is_master=False,
        timeout=timeout,
    )
    return dist.PrefixStore(f"gleam/attempt{elastic_restart()}", client)


def gather_to_first(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (``None`` on the others); a collective call."""
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered

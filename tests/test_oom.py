"""Out of GPU memory (simulated on CPU): training stops with a message naming the process (the
pipeline stage and rank) and the ``gleam plan`` budget, without a traceback."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from gleam_mri import cli
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.training import loop
from gleam_mri.training.checkpoint import load_checkpoint
from gleam_mri.training.errors import OutOfMemoryStop, out_of_memory_stop
from gleam_mri.training.strategies.base import Strategy
from gleam_mri.training.strategies.stage_link import PipelineLayout
from gleam_mri.units import parse_size

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")
TORCH_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 1 has a total capacity of 79.11 GiB of "
    "which 1.06 GiB is free. Of the allocated memory 75.02 GiB is allocated by PyTorch"
)


def test_message_names_the_stage_and_the_budget():
    err = torch.cuda.OutOfMemoryError(TORCH_MESSAGE)
    where = "pipeline stage 1 of 2 (rank 1, modules [2, 3])"
    stop = out_of_memory_stop(err, where, step=7, device="cuda:1", held=76 * 2**30)
    text = str(stop)
    assert isinstance(stop, OutOfMemoryStop)
    assert text.startswith(f"{where} ran out of GPU memory on cuda:1 at training step 7")
    assert "held 76.00 GiB and tried to allocate 2.50 GiB more" in text
    assert "need at least 78.50 GiB on a GPU with 79.11 GiB" in text
    assert "gleam plan CONFIG --budget 79.2GiB" in text  # what this GPU has, rounded up
    assert "--budget 78.5GiB" in text  # what the current settings need
    assert stop.needed == parse_size("78.5GiB") and stop.capacity == parse_size("79.11GiB")
    bare = str(out_of_memory_stop(torch.cuda.OutOfMemoryError("CUDA out of memory"), "x", 1, "cpu"))
    assert "gleam plan CONFIG --budget <the GPU's memory>" in bare


def test_pipeline_process_is_named_by_stage_rank_and_modules():
    cfg = SimpleNamespace(strategy=SimpleNamespace(name="pipeline"))
    stage = SimpleNamespace(layout=PipelineLayout(2, 2), stage=1, rank=3, replica=1)
    stage.module_ids = [2, 3]
    name = loop._process_name(cfg, stage)
    assert name == "pipeline stage 1 of 2 (rank 3, replica 1, modules [2, 3])"
    greedy = SimpleNamespace(strategy=SimpleNamespace(name="greedy"))
    assert loop._process_name(greedy, object()) == "training (greedy)"


def test_train_stops_with_the_plan_command(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    spec = SyntheticSpec(n_volumes=4, slices_per_volume=2, shape=(32, 24), n_coils=3, seed=1)
    write_synthetic_dataset(data, spec, progress=False)
    real_step = Strategy.train_step

    def step_then_oom(self, batch):
        if self.step >= 2:
            raise torch.cuda.OutOfMemoryError(TORCH_MESSAGE)
        return real_step(self, batch)

    monkeypatch.setattr(Strategy, "train_step", step_then_oom)
    out = tmp_path / "run"
    sets = [f"data.root={data}", f"train.out_dir={out}", "model.unrolls=2", "strategy.modules=2"]
    sets += ["model.features=4", "model.blocks=1", "train.device=cpu", "train.val_every=0"]
    sets += ["train.steps=4", "train.ckpt_every=1", "train.tensorboard=false"]
    args = ["train", CONFIG, "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert cli.main(args) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "training (greedy) ran out of GPU memory on cpu at training step 3" in err
    assert f"gleam plan {CONFIG} --budget 79.2GiB" in err
    assert load_checkpoint(out / "last.pt")["step"] == 2  # the checkpoints written are kept

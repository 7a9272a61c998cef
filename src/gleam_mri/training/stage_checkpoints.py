"""Per-stage checkpoints of pipelined GLEAM: file names, retention, the common resume step, and
the merge of the stages into an ordinary ``last.pt`` at the end (:class:`StageCheckpoints`).

Replica 0 of stage ``s`` writes ``stage<s>_step<NNNNNNNN>.pt`` (atomically, weights only) every
``train.ckpt_every`` steps and at the end, *before* acknowledging that step upstream. Stages
drift apart by at most ``staleness + 1`` steps per link, so when stage ``s`` of ``S`` has done
``N`` steps every stage has done at least ``N - (S - 1 - s)(staleness + 1)`` and saved every
checkpoint step up to there: files older than the newest such step are superseded by a
checkpoint that every stage holds, and are deleted. A run is resumed from the newest step that
*every* rank can read for its stage (agreed through ``all_gather_object``, so stages on machines
without a shared file system work too); nothing newer is deleted before it is superseded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

import torch.distributed as dist

from gleam_mri.config import config_to_dict
from gleam_mri.training.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from gleam_mri.training.distributed import gather_to_first
from gleam_mri.training.run import Run, checkpoint_state
from gleam_mri.training.strategies.stage_link import PipelineLayout


class Stage(Protocol):
    """What the per-stage files need of a pipeline stage (a
    :class:`~gleam_mri.training.strategies.pipeline.PipelineGreedy`, which keeps its state here)."""

    name: str
    layout: PipelineLayout
    rank: int
    stage: int
    replica: int
    staleness: int

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


_NAME = re.compile(r"^stage(\d+)_step(\d{8})\.pt$")


def stage_file(out_dir: Path, stage: int, step: int) -> Path:
    """Path of stage ``stage``'s checkpoint after ``step`` steps."""
    return Path(out_dir) / f"stage{stage}_step{step:08d}.pt"


def saved_steps(out_dir: Path, stage: int) -> list[int]:
    """Steps of stage ``stage``'s checkpoints present in ``out_dir``, ascending."""
    steps = []
    for path in Path(out_dir).glob(f"stage{stage}_step*.pt"):
        match = _NAME.match(path.name)
        if match and int(match.group(1)) == stage:
            steps.append(int(match.group(2)))
    return sorted(steps)


def remove_stale_stage_temporaries(out_dir: Path, stage: int) -> list[Path]:
    """Delete the temporary files of ``stage``'s checkpoints left by a process killed mid-write
    (:mod:`gleam_mri.atomic` names them ``.stage<s>_step<N>.pt.<8 hex>.tmp``)."""
    pattern = re.compile(rf"\.stage{stage}_step\d{{8}}\.pt\.[0-9a-f]{{8}}\.tmp")
    removed = []
    for path in sorted(Path(out_dir).glob(f".stage{stage}_step*.tmp")):
        if pattern.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def prune(
    out_dir: Path, layout: PipelineLayout, stage: int, done: int, every: int, lag: int
) -> None:
    """Delete ``stage``'s checkpoints superseded by one that every stage holds.

    ``lag = staleness + 1`` (steps a link may drift); ``every`` = ``train.ckpt_every``.
    """
    if every <= 0:
        return
    behind = done - (layout.stages - 1 - stage) * lag  # the last stage has done at least this
    common = (behind // every) * every
    for step in saved_steps(out_dir, stage):
        if step < common:
            stage_file(out_dir, stage, step).unlink(missing_ok=True)


def resume_step(out_dir: Path, layout: PipelineLayout, rank: int, resume: bool) -> int:
    """The step every rank resumes from (0 = fresh start); a collective call on every rank.

    Raises ``FileExistsError`` (every rank) when checkpoints exist without ``resume``, and
    ``ValueError`` when they exist but no step was saved by every stage.
    """
    stage, _ = layout.position(rank)
    out_dir = Path(out_dir)
    mine = (stage, saved_steps(out_dir, stage), (out_dir / "last.pt").exists())
    everyone: list = [None] * layout.world_size
    dist.all_gather_object(everyone, mine)
    anything = any(steps or last for _, steps, last in everyone)
    if not resume:
        if anything:
            raise FileExistsError(
                f"{out_dir} holds checkpoints of a pipeline run: pass --resume to continue it, "
                "or choose another train.out_dir (nothing was overwritten)"
            )
        return 0
    if not any(steps for _, steps, _ in everyone):
        if anything:
            raise ValueError(
                f"{out_dir}/last.pt exists but no per-stage checkpoint does: that run cannot be "
                "resumed as a pipeline (nothing was overwritten)"
            )
        return 0
    common = set.intersection(*(set(steps) for _, steps, _ in everyone))
    if not common:
        seen = {f"stage {s}": steps for s, steps, _ in everyone}
        raise ValueError(
            f"{out_dir}: no step was checkpointed by every stage, cannot resume consistently "
            f"(steps found per rank's stage: {seen}); the per-stage files were left untouched"
        )
    return max(common)


class StageCheckpoints:
    """The checkpoint store of a pipeline stage (see the module docstring).

    Replica 0 of each stage writes and prunes its stage's files; ``finish`` gathers every
    stage's parameters on rank 0, which writes ``last.pt`` in the ordinary format (so
    ``gleam eval`` / ``gleam recon`` use it as any other run's).
    """

    def __init__(self, run: Run, stage: Stage) -> None:
        self.run, self.stage = run, stage
        self.out = run.out_dir
        self.model_config = config_to_dict(run.cfg)["model"]

    def resume(self, resume: bool) -> int:
        stage = self.stage
        start = resume_step(self.out, stage.layout, stage.rank, resume)
        if stage.replica == 0:  # the stage's writer: temporaries of a run killed mid-write
            remove_stale_stage_temporaries(self.out, stage.stage)
        if start:
            path = stage_file(self.out, stage.stage, start)
            state = load_checkpoint(path, map_location=self.run.device)
            check_compatible(state, self.model_config, path)
            try:
                stage.load_state_dict(state)
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from err
        return start

    def save(self, done: int) -> None:
        stage = self.stage
        if stage.replica != 0:
            return
        state = {**stage.state_dict(), "model_config": self.model_config}
        save_checkpoint(stage_file(self.out, stage.stage, done), state)
        every = self.run.cfg.train.ckpt_every
        prune(self.out, stage.layout, stage.stage, done, every, stage.staleness + 1)

    def finish(self, done: int) -> Path:
        stage = self.stage
        mine = None
        if stage.replica == 0:
            mine = {k: v.detach().cpu() for k, v in stage.state_dict()["params"].items()}
        gathered = gather_to_first(mine)
        path = self.out / "last.pt"
        if gathered is not None:
            model = {k: v.detach().cpu().clone() for k, v in self.run.net.state_dict().items()}
            for params in gathered:
                model.update(params or {})
            layout = {"stages": stage.layout.stages, "replicas": stage.layout.replicas}
            strategy = {"name": stage.name, **layout}
            save_checkpoint(path, checkpoint_state(self.run, done, model, strategy))
        dist.barrier()
        return path

    def kept(self) -> str:
        return (
            f"The per-stage checkpoints written so far are kept in {self.out} (continue with "
            "--resume after fixing the cause)"
        )

"""Which weights a run keeps and when it stops, as ``gleam train`` uses them: ``train.keep=best``,
``train.patience`` and ``train.average`` are features of the one driver (``gleam adapt`` uses
them too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gleam_mri.config import ConfigError
from gleam_mri.training import loop
from gleam_mri.training.checkpoint import load_checkpoint
from gleam_mri.training.loop import fit, read_metrics_log
from gleam_mri.training.run_config import load_config

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")
TINY = ["model.unrolls=2", "strategy.modules=2", "model.features=4", "model.blocks=1"]
TINY += ["train.device=cpu", "train.tensorboard=false", "data.batch_size=1", "train.log_every=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tiny_2d_data) -> Path:
    return tiny_2d_data("selection", seed=4)


def config(data: Path, out: Path, *extra: str):
    sets = [*TINY, f"data.root={data}", f"train.out_dir={out}", "train.val_every=1"]
    return load_config(CONFIG, [*sets, "train.ckpt_every=1", *extra])


def scripted_validation(monkeypatch, losses: list[float]) -> None:
    """The driver's validation, with its loss replaced by ``losses`` in turn."""
    real, script = loop.validate, iter(losses)

    def validate(run, batches, loss_fn):
        metrics, results = real(run, batches, loss_fn)
        return {**metrics, "val/loss": next(script)}, results

    monkeypatch.setattr(loop, "validate", validate)


def test_keep_best_and_patience_stop_and_keep_the_best_step(data, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8])  # steps 0, 1, 2, ...
    out = tmp_path / "run"
    best = fit(config(data, out, "train.steps=6", "train.keep=best", "train.patience=2"))
    assert best == out / "best.pt"
    kept, last = load_checkpoint(best), load_checkpoint(out / "last.pt")
    assert kept["step"] == 2 and last["step"] == 4  # stopped 2 validations after the best
    assert kept["strategy"] == {} and last["selection"]["stopped"]
    history = last["selection"]["history"]
    assert [h["step"] for h in history] == [0, 1, 2, 3, 4]
    assert [h["step"] for h in read_metrics_log(out) if "train/loss" in h] == [1, 2, 3, 4]
    # the kept weights are those after step 2: a run of 2 steps ends with the same
    monkeypatch.undo()
    two = fit(config(data, tmp_path / "two", "train.steps=2"))
    reference = load_checkpoint(two)["model"]
    assert all(torch.equal(kept["model"][k], reference[k]) for k in reference)
    # resumed, a stopped run trains no further and keeps the same weights
    scripted_validation(monkeypatch, [])
    again = fit(config(data, out, "train.steps=6", "train.keep=best", "train.patience=2"), True)
    assert load_checkpoint(out / "last.pt")["step"] == 4
    assert all(torch.equal(load_checkpoint(again)["model"][k], reference[k]) for k in reference)


def test_weight_average_is_what_is_validated_and_kept(data, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [5.0, 4.0, 3.0, 2.0])  # the last validation is the best
    out = tmp_path / "run"
    best = fit(config(data, out, "train.steps=3", "train.keep=best", "train.average=0.5"))
    last, kept = load_checkpoint(out / "last.pt"), load_checkpoint(best)
    averaged = last["selection"]["averaged"]
    assert kept["step"] == 3 and averaged.keys() == last["model"].keys()
    assert any(not torch.equal(averaged[k], last["model"][k]) for k in averaged)
    assert all(torch.equal(kept["model"][k], averaged[k]) for k in averaged)


def test_selection_needs_validation_and_one_process(data, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.keep.*train\.val_every > 0"):
        config(data, tmp_path, "train.keep=best", "train.val_every=0")
    with pytest.raises(ConfigError, match=r"train\.patience.*train\.val_every > 0"):
        config(data, tmp_path, "train.patience=3", "train.val_every=0")
    with pytest.raises(ConfigError, match=r"train\.average.*\[0, 1\)"):
        config(data, tmp_path, "train.average=1")
    with pytest.raises(ConfigError, match=r"train\.patience.*pipeline"):
        config(data, tmp_path, "strategy.name=pipeline", "train.patience=2")

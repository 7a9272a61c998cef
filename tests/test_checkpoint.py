"""Checkpoints: atomic writes, weights_only loading, clear errors, RNG state, compatibility."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gleam_mri.config import config_to_dict
from gleam_mri.training.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    IncompatibleCheckpointError,
    check_compatible,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from gleam_mri.training.run_config import load_config


def trained_state() -> tuple[nn.Module, dict]:
    """A small model after one Adam step with a scheduler: the state a training loop saves."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    net(torch.randn(5, 4)).square().sum().backward()
    opt.step()
    sched.step()
    cfg = load_config(None)
    state = {
        "model": net.state_dict(),
        "model_config": config_to_dict(cfg)["model"],
        "optimizers": [opt.state_dict()],
        "schedulers": [sched.state_dict()],
        "step": 12,
        "best_psnr": 31.5,
        "rng": rng_state(),
        "config": config_to_dict(cfg),
    }
    return net, state


def assert_same(a: object, b: object) -> None:
    """Recursive equality for nested dicts/lists of tensors and plain values."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


def test_round_trip_restores_model_optimizer_and_scheduler(tmp_path: Path) -> None:
    net, state = trained_state()
    path = save_checkpoint(tmp_path / "runs" / "ckpt.pt", state)  # parent folders are created
    assert path == tmp_path / "runs" / "ckpt.pt"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]  # no temp file left
    loaded = load_checkpoint(path)
    assert_same(loaded, state)
    fresh = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    fresh.load_state_dict(loaded["model"])
    opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    opt.load_state_dict(loaded["optimizers"][0])
    assert opt.state_dict()["param_groups"][0]["weight_decay"] == 1e-4
    for p, q in zip(fresh.parameters(), net.parameters(), strict=True):
        assert torch.equal(p, q)


def test_every_allowed_value_type_survives_weights_only_loading(tmp_path: Path) -> None:
    state = {
        "none": None, "bool": True, "int": 2**70, "float": float("inf"), "complex": 1 - 2j,
        "str": "x", "bytes": b"\x00\x01", "tensor": torch.arange(3.0),
        "complex_tensor": torch.ones(2, dtype=torch.complex64),
        "parameter": nn.Parameter(torch.ones(2)), "size": torch.Size([2, 3]),
        "dtype": torch.bfloat16, "device": torch.device("cpu"), "tuple": (1, (2, 3)),
        "list": [[1], {"a": 2}], "ordered": collections.OrderedDict(b=1, a=2), "set": {1, 2},
        7: "int key", ("t", 1): "tuple key",
    }  # fmt: skip
    loaded = load_checkpoint(save_checkpoint(tmp_path / "all.pt", state))
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            assert type(loaded[key]) is type(value) and torch.equal(loaded[key], value)
        else:
            assert type(loaded[key]) is type(value) and loaded[key] == value, key


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_midway_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    path = save_checkpoint(tmp_path / "ckpt.pt", {"step": 1, "w": torch.ones(100)})
    before = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj: object, file: object, *args: object, **kwargs: object) -> None:
        real_save(obj, tmp_path / "scratch.bin")
        data = (tmp_path / "scratch.bin").read_bytes()
        (tmp_path / "scratch.bin").unlink()
        file.write(data[: len(data) // 2])  # type: ignore[attr-defined]
        raise error

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(type(error)):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(100)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    assert load_checkpoint(path)["step"] == 1


@pytest.mark.parametrize(
    ("value", "where", "hint"),
    [
        (lambda x: x, "state['extra']['fn']", "function"),
        (np.zeros(3), "state['extra']['fn']", "torch.from_numpy"),
        (np.float64(1.0), "state['extra']['fn']", ".item()"),
        (Path("a"), "state['extra']['fn']", "pathlib"),
    ],
    ids=["lambda", "ndarray", "numpy-scalar", "object"],
)
def test_unloadable_values_are_refused_before_writing(
    tmp_path: Path, value: object, where: str, hint: str
) -> None:
    path = save_checkpoint(tmp_path / "ckpt.pt", {"step": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError) as info:
        save_checkpoint(path, {"step": 2, "extra": {"fn": value}})
    message = str(info.value)
    assert str(path) in message and where in message and "weights_only=True" in message
    assert hint in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_save_rejects_non_dict_state_and_directory_target(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        save_checkpoint(tmp_path / "a.pt", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="is a directory"):
        save_checkpoint(tmp_path, {"step": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_corrupt_checkpoint_error_names_the_file(tmp_path: Path, damage: str) -> None:
    _, state = trained_state()
    path = save_checkpoint(tmp_path / "ckpt.pt", state)
    data = path.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not a torch file"}
    path.write_bytes(damaged[damage])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"{path}: cannot read checkpoint")
    assert "truncated, corrupt" in str(info.value)


def test_load_errors_missing_directory_unsafe_and_non_dict(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointNotFoundError) as info:
        load_checkpoint(missing)
    assert isinstance(info.value, FileNotFoundError) and str(missing) in str(info.value)
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"path": Path("x")}, unsafe)  # an arbitrary object: weights_only refuses it
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(unsafe)
    assert str(unsafe) in str(info.value) and "weights_only" in str(info.value)
    assert "trust" in str(info.value) and "pathlib" in str(info.value)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(CheckpointError, match="must hold a dict, got list"):
        load_checkpoint(listed)


def draws() -> tuple:
    """Numbers from every generator, including the cached-Gaussian paths."""
    return (
        random.random(),
        random.gauss(0.0, 1.0),
        np.random.rand(3).tolist(),  # noqa: NPY002 (the global state is what is tested)
        np.random.standard_normal(),  # noqa: NPY002
        torch.rand(3).tolist(),
        torch.randn(2).tolist(),
    )


def test_rng_state_round_trip_reproduces_the_same_numbers(tmp_path: Path) -> None:
    random.seed(5)
    np.random.seed(5)  # noqa: NPY002
    torch.manual_seed(5)
    random.gauss(0.0, 1.0)  # leaves a cached second Gaussian in python's random
    np.random.standard_normal()  # noqa: NPY002  and in numpy's RandomState
    path = save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = draws()
    draws()  # move every generator on
    set_rng_state(load_checkpoint(path)["rng"])
    assert draws() == expected
    assert draws() != expected  # the generators really advance


def test_set_rng_state_rejects_malformed_state() -> None:
    before = rng_state()
    with pytest.raises(ValueError, match="invalid RNG state"):
        set_rng_state({"python": before["python"]})
    with pytest.raises(ValueError, match="invalid RNG state"):
        set_rng_state({**before, "torch": torch.zeros(3, dtype=torch.uint8)})


def test_check_compatible_accepts_the_same_model(tmp_path: Path) -> None:
    net, state = trained_state()
    config = dict(state["model_config"])
    check_compatible(state, config, tmp_path / "c.pt", model=net)
    check_compatible(state, config, tmp_path / "c.pt", model=net.state_dict())
    config["features"] = 64.0  # the same number as a float is not a difference
    check_compatible(state, config, tmp_path / "c.pt")


def test_check_compatible_lists_config_differences(tmp_path: Path) -> None:
    _, state = trained_state()
    config = {**state["model_config"], "unrolls": 16, "dc": {"cg_iters": 5}}
    del config["dims"]
    config["extra"] = True
    path = tmp_path / "c.pt"
    with pytest.raises(IncompatibleCheckpointError) as info:
        check_compatible(state, config, path)
    message = str(info.value)
    assert message.startswith(f"{path}: checkpoint comes from a different model")
    assert "model config unrolls: checkpoint 8, current 16" in message
    assert "model config dc.cg_iters: checkpoint <absent>, current 5" in message
    assert "model config dims: checkpoint 'auto', current <absent>" in message
    assert "model config extra: checkpoint <absent>, current True" in message
    check_compatible(state, config, path, ignore=["unrolls", "dc", "dims", "extra"])
    with pytest.raises(IncompatibleCheckpointError, match="has no 'model_config'"):
        check_compatible({"model": {}}, config, path)


def test_check_compatible_lists_parameter_differences(tmp_path: Path) -> None:
    _, state = trained_state()
    other = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 1))
    path = tmp_path / "c.pt"
    with pytest.raises(IncompatibleCheckpointError) as info:
        check_compatible(state, state["model_config"], path, model=other)
    message = str(info.value)
    assert str(path) in message
    assert "0.weight: checkpoint shape (3, 4), model shape (5, 4)" in message
    assert "1.running_mean: checkpoint shape (3,), model shape (5,)" in message
    assert "2.weight: missing from checkpoint (model shape (1, 5))" in message
    assert "1.num_batches_tracked" not in message  # same shape () on both sides
    fewer = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(IncompatibleCheckpointError, match=r"1\.weight: only in checkpoint"):
        check_compatible(state, state["model_config"], path, model=fewer)
    many = {f"p{i}": torch.zeros(1) for i in range(30)}
    with pytest.raises(IncompatibleCheckpointError, match=r"\.\.\. and 10 more"):
        check_compatible({**state, "model": {}}, state["model_config"], path, model=many)


@pytest.mark.cuda
def test_cuda_rng_state_round_trip(tmp_path: Path) -> None:
    torch.cuda.manual_seed_all(3)
    state = rng_state()
    assert len(state["cuda"]) == torch.cuda.device_count()
    path = save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    expected = torch.rand(4, device="cuda").tolist()
    set_rng_state(load_checkpoint(path, map_location="cuda")["rng"])  # tensors moved back to CPU
    assert torch.rand(4, device="cuda").tolist() == expected

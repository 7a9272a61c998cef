"""Plain-dict checkpoints (nanoGPT style): written atomically, read with ``weights_only=True``.

A checkpoint is whatever dict the training loop builds, conventionally::

    {"model": net.state_dict(), "model_config": config_to_dict(cfg)["model"],
     "optimizers": [opt.state_dict() for opt in optimizers], "step": 1200,
     "rng": rng_state(), "config": config_to_dict(cfg)}

Security and format: :func:`load_checkpoint` always uses ``torch.load(weights_only=True)``, which
unpickles only tensors and plain Python values, so loading a checkpoint cannot run code.
:func:`save_checkpoint` therefore refuses, *before* writing anything, a state holding anything
else (numpy arrays or scalars, functions, arbitrary objects), naming where it sits; RNG states
from :func:`rng_state` are stored as lists, ints and tensors for the same reason. Allowed: dict,
OrderedDict, list, tuple, set, None, bool, int, float, complex, str, bytes, ``torch.Tensor`` and
``nn.Parameter``, ``torch.Size``, ``torch.dtype``, ``torch.device`` (module, optimizer, scheduler
and GradScaler state dicts qualify).

Atomicity: the state is written to a temporary file in the target folder, flushed and fsynced,
then renamed over the target with ``os.replace``; an exception at any point (including Ctrl-C)
removes the temporary file and leaves any previous checkpoint untouched. A full disk (``ENOSPC``,
``EDQUOT``; ``torch.save`` reports it as a ``RuntimeError`` caused by the ``OSError``) raises
:class:`DiskFullError` saying so, with the bytes written and the space left.
"""

from __future__ import annotations

import contextlib
import errno
import random
import re
import shutil
from collections import OrderedDict
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gleam_mri.atomic import atomic_write
from gleam_mri.units import format_size

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "DiskFullError",
    "IncompatibleCheckpointError",
    "check_compatible",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

_LEAVES = (
    type(None), bool, int, float, complex, str, bytes,
    torch.Size, torch.dtype, torch.device, torch.Tensor, nn.Parameter,
)  # fmt: skip
_MAX_LISTED = 20  # differences listed in an IncompatibleCheckpointError


class CheckpointError(ValueError):
    """A checkpoint cannot be written, read or used; the message starts with its path."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (also a :class:`FileNotFoundError`)."""


class DiskFullError(CheckpointError):
    """The disk (or quota) filled up while writing a checkpoint; the previous one is intact."""


class IncompatibleCheckpointError(CheckpointError):
    """The checkpoint was written for another model (config, parameter names or shapes)."""


# ---------------------------------------------------------------------------- save / load


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (parent folders are created); returns the path.

    Raises ``TypeError`` (nothing written) when ``state`` holds a value that
    ``torch.load(weights_only=True)`` would refuse.
    """
    path = Path(path)
    if not isinstance(state, dict):
        raise TypeError(f"{path}: checkpoint state must be a dict, got {type(state).__name__}")
    _check_loadable(state, "state", set(), path)
    if path.is_dir():
        raise CheckpointError(path, "is a directory, cannot write a checkpoint there")
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    written = None
    try:
        with atomic_write(path, "wb", permissions=mode, durable=True) as file:
            try:
                torch.save(state, file)
            finally:
                with contextlib.suppress(OSError, ValueError):
                    written = file.tell()
    except (OSError, RuntimeError) as exc:
        full = _disk_full(exc)
        if full is None:
            raise
        raise DiskFullError(path, _disk_full_problem(path, full, written)) from exc
    return path


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _disk_full(exc: BaseException) -> OSError | None:
    """The ``ENOSPC`` / ``EDQUOT`` error behind ``exc`` (itself, its cause or context), if any."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _disk_full_problem(path: Path, error: OSError, written: int | None) -> str:
    free = ""
    with contextlib.suppress(OSError):
        free = f", {format_size(shutil.disk_usage(path.parent).free)} free now"
    done = f" after {format_size(written)} of the new checkpoint" if written else ""
    previous = "the previous checkpoint is intact" if path.exists() else "no checkpoint was there"
    return (
        f"cannot write the checkpoint: the disk is full ({error.strerror or error}){done}{free}; "
        f"{previous} and the partial file was removed. Free space on that file system (or move the "
        "run's folder to a disk with room), then continue with --resume"
    )


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(path, "checkpoint file does not exist")
    if not path.is_file():
        raise CheckpointError(path, "is not a file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        text = str(exc).strip()
        reason = type(exc).__name__ + (f": {text.splitlines()[0]}" if text else "")
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if unsafe:  # a readable file holding something other than tensors and plain values
            raise CheckpointError(
                path,
                f"holds a {unsafe.group(1)}, which torch.load(weights_only=True) refuses (the "
                "file was not written by save_checkpoint); load it with weights_only=False only "
                "if you trust its source",
            ) from exc
        if "WeightsUnpickler error:" in text:  # torch's long advice hides the actual reason
            detail = text.split("WeightsUnpickler error:")[1].strip().splitlines()
            reason = f"{type(exc).__name__}: {detail[0] if detail else 'unreadable pickle'}"
        raise CheckpointError(
            path, f"cannot read checkpoint (truncated, corrupt or not a torch file?): {reason}"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(path, f"checkpoint must hold a dict, got {type(state).__name__}")
    return state


def _check_loadable(obj: Any, where: str, seen: set[int], path: Path) -> None:
    """Raise TypeError naming ``where`` if ``obj`` holds a value weights_only loading refuses."""
    kind = type(obj)
    if kind in _LEAVES:
        return
    if kind in (dict, OrderedDict, list, tuple, set):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if kind in (dict, OrderedDict):
            for key, value in obj.items():
                _check_loadable(key, f"{where} key {key!r}", seen, path)
                _check_loadable(value, f"{where}[{key!r}]", seen, path)
        else:
            for i, value in enumerate(obj):
                _check_loadable(value, f"{where}[{i}]", seen, path)
        return
    hint = ""
    if isinstance(obj, np.ndarray):
        hint = "; convert it with torch.from_numpy(...) or .tolist()"
    elif isinstance(obj, np.generic):
        hint = "; convert it with .item()"
    elif isinstance(obj, torch.Tensor):
        hint = "; store a plain tensor (tensor.as_subclass(torch.Tensor))"
    raise TypeError(
        f"{path}: cannot save checkpoint: {where} is a {kind.__module__}.{kind.__qualname__}, "
        f"which torch.load(weights_only=True) refuses{hint}"
    )


# ---------------------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    """The global RNG states: python ``random``, numpy's global RandomState, torch CPU and CUDA.

    Returns ``{"python": {...}, "numpy": {...}, "torch": uint8 tensor, "cuda": [uint8 tensor per
    device]}`` (``"cuda"`` only when CUDA is available), built from lists, ints and tensors so it
    passes through :func:`save_checkpoint` / :func:`load_checkpoint`.
    """
    version, internal, gauss_next = random.getstate()
    # the global RandomState is what fastMRI-style code and third-party libraries draw from
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(name),
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore states from :func:`rng_state`. CUDA states are restored for the devices present
    (none on a CPU-only machine, so a GPU run can be resumed on CPU)."""
    try:
        py, npy = state["python"], state["numpy"]
        py_state = (int(py["version"]), tuple(int(v) for v in py["state"]), py["gauss_next"])
        np_state = (
            str(npy["bit_generator"]),
            np.asarray(npy["keys"], dtype=np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
        torch_state = torch.as_tensor(state["torch"], dtype=torch.uint8).cpu()
        cuda_states = list(state.get("cuda", ()))
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
        torch.set_rng_state(torch_state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        problem = f"invalid RNG state (expected the dict from rng_state()): {exc!r}"
        raise ValueError(problem) from exc
    if cuda_states and torch.cuda.is_available():
        for device, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(torch.as_tensor(cuda_state, dtype=torch.uint8).cpu(), device)


# ---------------------------------------------------------------------------- compatibility


def check_compatible(
    ckpt: Mapping[str, Any],
    model_config: Mapping[str, Any],
    path: str | Path,
    *,
    model: nn.Module | Mapping[str, torch.Tensor] | None = None,
    ignore: Collection[str] = (),
) -> None:
    """Raise :class:`IncompatibleCheckpointError` listing every difference between the
    checkpoint's model and the current one.

    Compares ``ckpt["model_config"]`` with ``model_config`` (nested dicts, dotted keys in
    ``ignore`` and anything below them are skipped, e.g. ``"dc.cg_iters"``), and when ``model``
    (a module or a state dict) is given, the parameter and buffer names and shapes of
    ``ckpt["model"]`` with it.
    """
    if "model_config" not in ckpt:
        raise IncompatibleCheckpointError(path, "checkpoint has no 'model_config' entry")
    saved_config = ckpt["model_config"]
    if not isinstance(saved_config, Mapping) or not isinstance(model_config, Mapping):
        raise TypeError(f"{path}: model configs must be mappings")
    diffs = [d for d in _config_diff(saved_config, model_config, "") if not _ignored(d[0], ignore)]
    lines = [f"model config {key}: checkpoint {old}, current {new}" for key, old, new in diffs]
    if model is not None:
        if not isinstance(ckpt.get("model"), Mapping):
            raise IncompatibleCheckpointError(path, "checkpoint has no 'model' state dict")
        current = model.state_dict() if isinstance(model, nn.Module) else model
        lines += _state_diff(ckpt["model"], current)
    if lines:
        shown = lines[:_MAX_LISTED]
        if len(lines) > _MAX_LISTED:
            shown.append(f"... and {len(lines) - _MAX_LISTED} more")
        raise IncompatibleCheckpointError(
            path, "checkpoint comes from a different model:\n  " + "\n  ".join(shown)
        )


def _config_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str
) -> list[tuple[str, str, str]]:
    """``(dotted key, old repr, new repr)`` for every leaf that differs; absent is '<absent>'."""
    diffs = []
    for key in sorted(set(old) | set(new), key=str):
        dotted = f"{prefix}.{key}" if prefix else str(key)
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += _config_diff(a, b, dotted)
        elif (type(a) is not type(b) and not _both_numbers(a, b)) or a != b:
            diffs.append((dotted, repr(a), repr(b)))
    return diffs


def _state_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    lines = []
    for name in sorted(set(saved) | set(current)):
        if name not in saved:
            lines.append(f"{name}: missing from checkpoint (model shape {_shape(current[name])})")
        elif name not in current:
            lines.append(f"{name}: only in checkpoint (shape {_shape(saved[name])}), not in model")
        elif _shape(saved[name]) != _shape(current[name]):
            lines.append(
                f"{name}: checkpoint shape {_shape(saved[name])}, "
                f"model shape {_shape(current[name])}"
            )
    return lines


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _ignored(key: str, ignore: Collection[str]) -> bool:
    return any(key == item or key.startswith(item + ".") for item in ignore)


def _both_numbers(a: Any, b: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None

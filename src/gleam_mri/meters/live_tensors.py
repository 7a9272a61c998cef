"""Live tensors of a region: :class:`LiveTensorMeter` and :func:`storage_bytes`.

:class:`LiveTensorMeter` counts what a region really holds, on any device: it sees the output of
every operation dispatched while it is active (a
:class:`~torch.utils._python_dispatch.TorchDispatchMode`), the backward pass, checkpoint
recomputation and the optimizer step included when they run inside the region, and counts each
newly created storage once while it is alive, whoever keeps it (the autograd graph, a checkpoint,
a Python name, a view). It does not count what existed before the region (parameters, the batch,
optimizer state from earlier steps; pass their size as ``baseline``, e.g. from
:func:`storage_bytes`), nor temporaries that an operation allocates and frees internally
(cuDNN/cuFFT workspaces, im2col buffers). On CUDA its peak should match
``torch.cuda.max_memory_allocated`` over the region less what existed before, up to the
allocator's rounding and those workspaces (a ``cuda`` test checks it within 10%).
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _OpInfo(NamedTuple):
    """What :class:`LiveTensorMeter` needs to know of an operator (cached per operator)."""

    aten: bool  # an operator with a schema: its arguments and outputs nest tuples, lists, dicts
    fresh: tuple[bool, ...]  # per declared return: not an alias of an input (new storage)
    any_fresh: bool
    mutable: bool  # writes into an argument (in-place and ``out=`` ops): may resize its storage
    check_inputs: bool  # an output declared new may still be an input's storage (look)


_OP_INFO: dict[Any, _OpInfo] = {}


def _op_info(func: Any) -> _OpInfo:
    info = _OP_INFO.get(func)
    if info is not None:
        return info
    schema = getattr(func, "_schema", None)
    if schema is None:  # not an ATen operator: any output may be new
        info = _OpInfo(False, (), True, False, True)
    elif func is torch.ops.aten.lift_fresh.default:
        # torch.tensor(data) inside the region: the constant is built outside the dispatcher and
        # lifted as an alias of itself; it is new memory all the same
        info = _OpInfo(True, (True,), True, False, False)
    else:
        fresh = tuple(r.alias_info is None for r in schema.returns)
        info = _OpInfo(True, fresh, any(fresh), bool(schema.is_mutable), True)
    _OP_INFO[func] = info
    return info


def _leaves(tree: Any, info: _OpInfo) -> list[Any]:
    """The leaves of an operator's arguments or outputs (pytree's walk for non-ATen ops)."""
    if not info.aten:
        return tree_leaves(tree)
    if isinstance(tree, torch.Tensor):
        return [tree]
    out: list[Any] = []
    if isinstance(tree, (tuple, list)):
        _walk(tree, out)
    return out


def _walk(items: Any, out: list[Any]) -> None:  # ATen nests only tuples, lists and dicts
    for item in items:
        if isinstance(item, torch.Tensor):
            out.append(item)
        elif isinstance(item, (tuple, list)):
            _walk(item, out)
        elif isinstance(item, dict):
            _walk(item.values(), out)


class _StorageRef(weakref.ref):
    """Weak reference to a counted storage; ``key`` is what its death releases (``None``: no-op)."""

    __slots__ = ("key",)

    def __new__(cls, storage: Any, callback: Callable[[Any], None], key: Any) -> _StorageRef:
        return super().__new__(cls, storage, callback)

    def __init__(self, storage: Any, callback: Callable[[Any], None], key: Any) -> None:
        super().__init__(storage, callback)
        self.key = key


_PLAIN = (torch.Tensor, nn.Parameter)  # wrapper subclasses (fake, distributed) own no storage


def _measurable(t: Any) -> bool:
    return type(t) in _PLAIN and t.layout == torch.strided and t.device.type != "meta"


def _on(device: torch.device, want: torch.device | None) -> bool:
    """Whether ``device`` is ``want`` (any device for ``None``, any index for ``cuda``)."""
    return want is None or (
        device.type == want.type and (want.index is None or device.index == want.index)
    )


class LiveTensorMeter(TorchDispatchMode):
    """Context manager: live and peak bytes of tensor storages created inside the region.

    Every ATen operation dispatched inside the region passes through the meter (a
    :class:`~torch.utils._python_dispatch.TorchDispatchMode`), in the forward pass, in backward
    (gradients, the engine's sums, ``.grad`` fields), in checkpoint recomputation and in optimizer
    steps. Each output that the operator's schema declares new (not an alias of an input) and
    whose storage is neither counted already nor one of the inputs' is counted with its storage's
    full size, once, until the storage is freed, however it is kept alive: by the autograd graph,
    a checkpoint, a Python name, a view, a container. Views, ``detach``, reshapes that alias,
    ``view_as_real`` and in-place ops add nothing; a tensor that an in-place or ``out=`` op
    resizes inside the region is counted at its new size. The meter holds only weak references:
    it keeps nothing alive and changes no result.

    Not counted: storages that existed before the region (parameters, the batch, optimizer state
    and ``.grad`` of earlier steps; ``baseline`` is for them) and their views; temporaries an
    operation allocates and frees inside itself (cuDNN / cuBLAS / cuFFT workspaces, im2col
    buffers), which never reach the dispatcher; memory not owned by a dense tensor (sparse and
    nested layouts, meta tensors, tensor subclasses, allocator caches, CUDA graphs). Freeing a
    storage that existed before the region lowers real memory but not ``current_bytes``, so
    ``baseline + peak_bytes`` is an upper bound of what was alive at the peak.

    Args:
        device: count only storages on this device (``"cuda"``: any CUDA device, ``"cuda:1"``:
            that one); ``None`` (default) counts every device, and the per-device figures below
            split them.
        baseline: bytes that exist before the region and stay alive through it (see
            :func:`storage_bytes`); only added in :attr:`absolute_peak_bytes`.

    Attributes (bytes):
        current_bytes: storages created in the region and alive now (it keeps falling as they
            are freed after the region ends: what is left is what the region leaves behind, e.g.
            new ``.grad`` fields and optimizer state).
        peak_bytes: the maximum of ``current_bytes`` while the meter was active (since
            :meth:`reset_peak`).
        total_bytes: every counted storage summed (allocation traffic).
        current_by_device, peak_by_device: the same per device (``"cpu"``, ``"cuda:0"``, ...);
            the per-device peaks need not be reached at the same moment.

    Usage::

        with LiveTensorMeter(baseline=storage_bytes(net, batch)) as meter:
            strategy.train_step(batch)
        print(meter.peak_bytes, meter.absolute_peak_bytes)

    Each dispatched operation costs some microseconds of Python, so metered steps are slower.
    """

    def __init__(self, device: torch.device | str | None = None, baseline: int = 0) -> None:
        super().__init__()
        self.device = None if device is None else torch.device(device)
        self.baseline = int(baseline)
        self.current_bytes = 0
        self.peak_bytes = 0
        self.total_bytes = 0
        self.current_by_device: dict[str, int] = {}
        self.peak_by_device: dict[str, int] = {}
        self._live: dict[tuple[str, int, int], _StorageRef] = {}
        # backward may run on the autograd engine's device threads; reentrant, because a garbage
        # collection inside a locked section may free a storage and call _release
        self._lock = threading.RLock()
        self._active = False

    @property
    def absolute_peak_bytes(self) -> int:
        """``baseline + peak_bytes``: the region's peak with what existed before it."""
        return self.baseline + self.peak_bytes

    def __enter__(self) -> LiveTensorMeter:
        if self._active:
            raise RuntimeError("LiveTensorMeter is already active")
        super().__enter__()
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._active = False
        super().__exit__(*exc)

    def reset_peak(self) -> None:
        """Restart the peaks at the current live bytes."""
        with self._lock:
            self.peak_bytes = self.current_bytes
            self.peak_by_device = dict(self.current_by_device)

    # --------------------------------------------------------------------- dispatch

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        info = _OP_INFO.get(func) or _op_info(func)
        before = self._snapshot(args, kwargs, info) if info.mutable else None
        out = func(*args, **kwargs)
        if before:
            self._count_resized(before)
        if info.any_fresh:
            self._count_outputs(out, info, args, kwargs)
        return out

    def _wanted(self, device: torch.device) -> bool:
        return _on(device, self.device)

    def _count_outputs(self, out: Any, info: _OpInfo, args: Any, kwargs: Any) -> None:
        fresh = info.fresh
        if isinstance(out, torch.Tensor):
            candidates = [out] if not info.aten or fresh[0] else []
        elif len(fresh) > 1 and isinstance(out, (tuple, list)) and len(out) == len(fresh):
            candidates = _leaves([o for o, new in zip(out, fresh, strict=True) if new], info)
        else:  # a list return (Tensor[]), no return, or outputs unlike the schema
            candidates = _leaves(out, info)
        inputs: set[tuple[str, int]] | None = None if info.check_inputs else set()
        for t in candidates:
            if not _measurable(t):
                continue
            device = t.device
            if self.device is not None and not self._wanted(device):
                continue
            storage = t.untyped_storage()
            nbytes = storage.nbytes()
            if nbytes == 0:
                continue
            key = (str(device), storage.data_ptr(), nbytes)
            if key in self._live:  # a view of a counted storage (e.g. aten._unsafe_view)
                continue
            if inputs is None:
                inputs = {
                    (str(a.device), a.untyped_storage().data_ptr())
                    for a in _leaves((args, kwargs), info)
                    if _measurable(a)
                }
            if key[:2] in inputs:  # an undeclared alias of an input
                continue
            self._add(storage, key)

    def _snapshot(self, args: Any, kwargs: Any, info: _OpInfo) -> list[tuple[Any, Any, Any]]:
        """The arguments of a mutating op with their storages, to spot the ones it resizes."""
        seen = []
        for t in _leaves((args, kwargs), info):
            if _measurable(t) and self._wanted(t.device):
                storage = t.untyped_storage()
                seen.append((t, storage, (str(t.device), storage.data_ptr(), storage.nbytes())))
        return seen

    def _count_resized(self, before: list[tuple[Any, Any, Any]]) -> None:
        for t, storage, old in before:
            if t.untyped_storage() is not storage:  # set_ onto another storage: nothing new
                continue
            key = (old[0], storage.data_ptr(), storage.nbytes())
            if key == old:
                continue
            with self._lock:
                ref = self._live.get(old)
                if ref is not None and ref() is storage:
                    self._drop(ref)
            if key[2] > 0 and key not in self._live:
                self._add(storage, key)

    # --------------------------------------------------------------------- bookkeeping

    def _add(self, storage: Any, key: tuple[str, int, int]) -> None:
        ref = _StorageRef(storage, self._release, key)
        device, _, nbytes = key
        with self._lock:
            if key in self._live:  # counted meanwhile by another thread
                return
            self._live[key] = ref
            self.current_bytes += nbytes
            self.total_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
            now = self.current_by_device.get(device, 0) + nbytes
            self.current_by_device[device] = now
            self.peak_by_device[device] = max(self.peak_by_device.get(device, 0), now)

    def _drop(self, ref: _StorageRef) -> None:
        """Uncount ``ref``'s storage (lock held)."""
        key, ref.key = ref.key, None
        if key is None or self._live.get(key) is not ref:
            return
        del self._live[key]
        self.current_bytes -= key[2]
        self.current_by_device[key[0]] -= key[2]

    def _release(self, ref: Any) -> None:  # weakref callback: the storage was freed
        with self._lock:
            self._drop(ref)

    def __repr__(self) -> str:
        return (
            f"LiveTensorMeter(current={self.current_bytes}, peak={self.peak_bytes}, "
            f"total={self.total_bytes}, baseline={self.baseline})"
        )


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, nn.Module):
        for p in obj.parameters():
            yield p
            if p.grad is not None:
                yield p.grad
        yield from obj.buffers()
    elif isinstance(obj, torch.optim.Optimizer):
        for state in obj.state.values():
            yield from _tensors(state)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, f.name))
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            yield from _tensors(item)


def storage_bytes(*objects: Any, device: torch.device | str | None = None) -> int:
    """Bytes of the distinct tensor storages in ``objects``, e.g. a :class:`LiveTensorMeter`
    baseline.

    Looks into tensors, modules (parameters, their ``.grad``, buffers), optimizers (their state),
    dataclasses (e.g. :class:`~gleam_mri.data.batch.MRIBatch`), mappings and sequences; each
    storage counts once with its full size, however many views of it appear. ``device`` keeps
    only one device (as in :class:`LiveTensorMeter`).
    """
    want = None if device is None else torch.device(device)
    seen: dict[tuple[str, int], int] = {}
    for t in _tensors(objects):
        if _measurable(t) and _on(t.device, want):
            storage = t.untyped_storage()
            seen[(str(t.device), storage.data_ptr())] = storage.nbytes()
    return sum(seen.values())

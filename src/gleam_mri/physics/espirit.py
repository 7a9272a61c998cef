"""ESPIRiT coil-sensitivity estimation from a fully sampled calibration region.

Uecker et al., "ESPIRiT - an eigenvalue approach to autocalibrating parallel MRI", MRM 2014:

1. the calibration matrix holds every ``kernel_size`` patch of the calibration region (one row per
   patch, ``C * prod(kernel)`` columns);
2. its right singular vectors with singular value ``> threshold * max`` span the signal subspace;
   each is a multi-coil k-space kernel ``(C, *kernel)``;
3. the kernels become a per-pixel Hermitian ``C x C`` operator on the full image grid,
   ``W(r) = N / prod(kernel) * sum_j K_j(r) K_j(r)^H`` with ``K_j`` the centred, orthonormal inverse
   FFT of kernel ``j`` zero-padded to the grid (``N`` grid points); its eigenvalues lie in
   ``[0, 1]`` and the sensitivities are the eigenvectors with eigenvalue ~1;
4. per pixel, the eigenvector of the largest eigenvalue is the map; it is set to zero where that
   eigenvalue is below ``crop``, and its phase is made relative to a reference so maps are smooth.

Step 3 is computed exactly without forming the ``K_j`` on the full grid: ``W(r)`` is a
trigonometric polynomial whose coefficients are the kernels' cross-correlations (support
``2 * kernel - 1``), so the correlations are computed on a small grid and placed around DC of the
full grid before one inverse FFT per coil pair (:func:`image_space_gram`).

Shapes: k-space ``(C, *D)`` with the last ``fft_ndim`` axes of ``D`` Fourier encoded and DC at
index ``N // 2`` (centred FFT of :mod:`gleam_mri.fft`). Maps come back as ``(C, *D)``; add the batch
axis (``maps[None]``) for :class:`~gleam_mri.physics.operators.SenseOp`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from gleam_mri.crop import center_crop
from gleam_mri.fft import ifftnc

_WORK_DTYPE = torch.complex128


def _per_axis(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    """Expand an int to ``ndim`` copies, or check a sequence has ``ndim`` positive entries."""
    sizes = (int(value),) * ndim if isinstance(value, int) else tuple(int(v) for v in value)
    if len(sizes) != ndim or any(s < 1 for s in sizes):
        raise ValueError(f"{name} must be a positive int or {ndim} positive ints, got {value}")
    return sizes


def _check_kspace(kspace: torch.Tensor, fft_ndim: int, exact_rank: bool) -> None:
    if not isinstance(kspace, torch.Tensor):
        raise TypeError(f"k-space must be a torch.Tensor, got {type(kspace).__name__}")
    if not torch.is_complex(kspace):
        raise TypeError(f"k-space must be complex64 or complex128, got {kspace.dtype}")
    if fft_ndim < 1:
        raise ValueError(f"fft_ndim must be >= 1, got {fft_ndim}")
    if exact_rank and kspace.ndim != fft_ndim + 1:
        raise ValueError(
            f"k-space must have shape (C, *D) with {fft_ndim} encoded axes, i.e. {fft_ndim + 1} "
            f"axes, got shape {tuple(kspace.shape)}"
        )
    if kspace.ndim < fft_ndim + 1:
        raise ValueError(
            f"k-space must have shape (C, *D) with at least {fft_ndim} encoded axes, "
            f"got shape {tuple(kspace.shape)}"
        )


def calibration_region(
    kspace: torch.Tensor, calib_size: int | Sequence[int], fft_ndim: int = 2
) -> torch.Tensor:
    """Centre crop of k-space ``(C, *D)`` to ``calib_size`` over the last ``fft_ndim`` axes.

    The block keeps DC at its own index ``n // 2``. Leading axes of ``D`` that are not encoded are
    kept: for cine ``(C, T, H, W)`` with ``fft_ndim=2`` this returns ``(C, T, *calib)``. The
    calibration region is sampled in every frame, so for cine the caller may average the frames
    first (``kspace.mean(dim=1)``) and estimate one set of maps for all frames.
    """
    _check_kspace(kspace, fft_ndim, exact_rank=False)
    full = tuple(kspace.shape[-fft_ndim:])
    sizes = _per_axis(calib_size, fft_ndim, "calib_size")
    if any(s > n for s, n in zip(sizes, full, strict=True)):
        raise ValueError(
            f"calibration size {sizes} is larger than the encoded k-space shape {full}"
        )
    return center_crop(kspace, sizes, keep_dc=True)


def find_calibration_size(
    mask: torch.Tensor, fft_ndim: int = 2, shape: Sequence[int] | None = None
) -> tuple[int, ...]:
    """Size of the largest fully sampled centred block of a sampling mask, per encoded axis.

    ``mask`` (real or bool, nonzero = sampled) is broadcast to ``shape`` (the encoded k-space shape,
    e.g. ``(H, W)``) when given, so a line mask ``(1, W)`` yields the full readout size along
    ``H``. Leading axes (coils, frames, batch) are reduced with "all": a location counts only if it
    is sampled everywhere. The block grows one slice at a time on each axis in turn, from the DC
    sample outwards (the block of size ``n`` starts at ``N // 2 - n // 2``) while it stays fully
    sampled; the result is a maximal centred block, balanced between the axes. Raises
    ``ValueError`` when the DC sample itself is not sampled.
    """
    if torch.is_complex(mask):
        raise TypeError("the mask must be real or bool, not complex")
    if mask.ndim < fft_ndim:
        raise ValueError(f"the mask needs at least {fft_ndim} axes, got {tuple(mask.shape)}")
    sampled = mask != 0
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != fft_ndim:
            raise ValueError(f"shape must have {fft_ndim} entries, got {shape}")
        try:
            sampled = sampled.expand(*sampled.shape[:-fft_ndim], *shape)
        except RuntimeError as err:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to {shape}"
            ) from err
    if sampled.ndim > fft_ndim:
        sampled = sampled.flatten(0, sampled.ndim - fft_ndim - 1).all(dim=0)
    full = tuple(sampled.shape)
    sizes = [1] * fft_ndim
    if not bool(center_crop(sampled, sizes, keep_dc=True).all()):
        raise ValueError("the mask does not sample the k-space centre (DC at N // 2)")
    blocked = [n == 1 for n in full]
    while not all(blocked):
        for axis in range(fft_ndim):
            if blocked[axis]:
                continue
            trial = list(sizes)
            trial[axis] += 1
            if bool(center_crop(sampled, trial, keep_dc=True).all()):
                sizes = trial
            blocked[axis] = sizes[axis] != trial[axis] or sizes[axis] == full[axis]
    return tuple(sizes)


def signal_kernels(
    calib: torch.Tensor, kernel_size: Sequence[int], threshold: float
) -> torch.Tensor:
    """Signal-subspace kernels of a calibration region ``(C, *calib)``: ``(K, C, *kernel_size)``.

    Rows of the calibration (Hankel) matrix are all ``kernel_size`` patches (unfold with step 1);
    the kept right singular vectors (rows of ``V^H``) have singular value ``> threshold * max``.
    Works in the precision of ``calib`` (use complex128).
    """
    ndim = len(kernel_size)
    patches = calib
    for axis, k in enumerate(kernel_size):
        patches = patches.unfold(1 + axis, k, 1)  # (C, *n_patches, *kernel) when done
    n_coils = calib.shape[0]
    patch_axes = tuple(range(1, 1 + ndim))
    kernel_axes = tuple(range(1 + ndim, 1 + 2 * ndim))
    matrix = patches.permute(*patch_axes, 0, *kernel_axes)
    matrix = matrix.reshape(-1, n_coils * math.prod(kernel_size))
    # Right singular vectors and squared singular values from the (small) Gram matrix A^H A:
    # much faster than an SVD of the tall matrix, and accurate enough in complex128 for the
    # thresholds used (a singular-value ratio of 0.02 is an eigenvalue ratio of 4e-4).
    eigvals, eigvecs = torch.linalg.eigh(matrix.conj().T @ matrix)  # ascending
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)
    keep = eigvals.clamp_min(0).sqrt() > threshold * eigvals[0].sqrt()
    return eigvecs[:, keep].conj().T.reshape(-1, n_coils, *kernel_size)


def image_space_gram(kernels: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """ESPIRiT operator ``W`` ``(C, C, *image_shape)`` of kernels ``(K, C, *kernel)``.

    ``W[c, d](r) = N / prod(kernel) * sum_j K_j[c](r) conj(K_j[d](r))`` where ``K_j`` is the
    centred orthonormal inverse FFT of kernel ``j`` zero-padded to ``image_shape`` (``N`` points).
    Exact: the kernels' cross-correlations (support ``2 * kernel - 1``) are placed around DC,
    wrapping periodically if the grid is smaller, and transformed once per coil pair.
    """
    kernel_size = tuple(kernels.shape[2:])
    ndim = len(kernel_size)
    image_shape = tuple(int(s) for s in image_shape)
    axes = tuple(range(-ndim, 0))
    small = tuple(2 * k - 1 for k in kernel_size)
    spectra = torch.fft.fftn(kernels, s=small, dim=axes)
    cross = torch.einsum("jc...,jd...->cd...", spectra, spectra.conj())
    # corr[c, d][delta mod small] = sum_q kernel_c(q + delta) conj(kernel_d(q))
    corr = torch.fft.ifftn(cross, dim=axes)
    for axis, (k, m, n) in enumerate(zip(kernel_size, small, image_shape, strict=True)):
        delta = torch.arange(m, device=kernels.device)
        delta = torch.where(delta < k, delta, delta - m)
        target = torch.remainder(n // 2 + delta, n)
        dim = 2 + axis
        grown_shape = list(corr.shape)
        grown_shape[dim] = n
        grown = corr.new_zeros(grown_shape)
        corr = grown.index_add_(dim, target, corr)
    scale = math.sqrt(math.prod(image_shape)) / math.prod(kernel_size)
    return ifftnc(corr, ndim) * scale


def _phase_reference(calib: torch.Tensor, reference_coil: int | None) -> torch.Tensor:
    """Coil weights ``(C,)`` whose combination ``sum_c conj(u_c) S_c`` sets the maps' phase."""
    n_coils = calib.shape[0]
    if reference_coil is not None:
        if not -n_coils <= reference_coil < n_coils:
            raise ValueError(f"reference_coil {reference_coil} is out of range for {n_coils} coils")
        weights = torch.zeros(n_coils, dtype=calib.dtype, device=calib.device)
        weights[reference_coil] = 1
        return weights
    samples = calib.reshape(n_coils, -1)
    _, vectors = torch.linalg.eigh(samples @ samples.conj().T)
    return vectors[:, -1]  # principal component of the coil data: a broad virtual coil


def espirit_maps(
    kspace: torch.Tensor,
    calib_size: int | Sequence[int] = 24,
    kernel_size: int | Sequence[int] = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
    fft_ndim: int = 2,
    image_shape: Sequence[int] | None = None,
    reference_coil: int | None = None,
    chunk_size: int = 16384,
) -> torch.Tensor:
    """ESPIRiT sensitivity maps, complex ``(C, *image_shape)``, from k-space ``(C, *D)``.

    Args:
        kspace: complex64/complex128 ``(C, *D)``, ``D`` of ``fft_ndim`` encoded axes (2D ``(H, W)``
            or 3D ``(Z, H, W)``); only its centred calibration region is used. It may also be the
            calibration region itself, with ``image_shape`` giving the output grid. For cine,
            average the frames first (see :func:`calibration_region`).
        calib_size: size of the fully sampled centred block, int or per axis (see
            :func:`find_calibration_size` to get it from a mask).
        kernel_size: ESPIRiT kernel size, int or per axis.
        threshold: singular values ``> threshold * max`` span the signal subspace.
        crop: maps are zero where the largest eigenvalue of the ESPIRiT operator is ``< crop``.
        image_shape: output grid (default: the encoded shape of ``kspace``).
        reference_coil: coil whose phase is removed from all maps; ``None`` uses a virtual coil,
            the principal component of the calibration data, which covers the whole object.
        chunk_size: pixels per batched eigen-decomposition (bounds the memory).

    The per-pixel eigenvectors have unit norm, so ``sum_c |S_c|^2`` is 1 inside the crop, 0 outside.
    """
    _check_kspace(kspace, fft_ndim, exact_rank=True)
    if not bool(torch.isfinite(kspace).all()):
        raise ValueError("k-space contains NaN or Inf values")
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if not 0 <= crop < 1:
        raise ValueError(f"crop must be in [0, 1), got {crop}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    calib_sizes = _per_axis(calib_size, fft_ndim, "calib_size")
    kernel_sizes = _per_axis(kernel_size, fft_ndim, "kernel_size")
    if any(k > c for k, c in zip(kernel_sizes, calib_sizes, strict=True)):
        raise ValueError(f"kernel size {kernel_sizes} exceeds the calibration size {calib_sizes}")
    grid = tuple(kspace.shape[1:]) if image_shape is None else tuple(int(s) for s in image_shape)
    if len(grid) != fft_ndim or any(n < 1 for n in grid):
        raise ValueError(f"image_shape must have {fft_ndim} positive entries, got {image_shape}")

    calib = calibration_region(kspace, calib_sizes, fft_ndim).to(_WORK_DTYPE)
    if not bool((calib != 0).any()):
        raise ValueError(
            f"the calibration region {calib_sizes} of k-space {tuple(kspace.shape)} is all zeros"
        )
    holes = int((calib == 0).all(dim=0).sum())
    if holes:
        raise ValueError(
            f"the calibration region {calib_sizes} has {holes} unsampled locations (zero in every "
            "coil); use a smaller calib_size, e.g. find_calibration_size(mask)"
        )
    calib = calib / calib.abs().max()  # the subspace does not depend on the scale
    kernels = signal_kernels(calib, kernel_sizes, threshold)
    gram = image_space_gram(kernels, grid)  # (C, C, *grid)
    n_coils = kspace.shape[0]
    gram = gram.reshape(n_coils, n_coils, -1).permute(2, 0, 1)  # (P, C, C)
    weights = _phase_reference(calib, reference_coil)

    maps = torch.empty(n_coils, gram.shape[0], dtype=_WORK_DTYPE, device=kspace.device)
    for start in range(0, gram.shape[0], chunk_size):
        block = gram[start : start + chunk_size]
        block = 0.5 * (block + block.conj().transpose(-1, -2))
        values, vectors = torch.linalg.eigh(block)  # ascending eigenvalues
        top = vectors[..., -1]  # (P, C)
        virtual = top @ weights.conj()
        phase = torch.where(virtual.abs() > 0, virtual.conj() / virtual.abs(), 1)
        top = top * phase[:, None] * (values[..., -1] >= crop)[:, None]
        maps[:, start : start + chunk_size] = top.T
    return maps.reshape(n_coils, *grid).to(kspace.dtype)

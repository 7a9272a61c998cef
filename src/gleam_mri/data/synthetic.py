"""The built-in synthetic data set: phantoms (or real anatomy) + simulated coils, fastMRI layout.

Each file holds one "volume" in the fastMRI multi-coil layout (see :mod:`gleam_mri.data.fastmri`):

- ``2d``: ``kspace (slices, C, H, W)`` — every slice is a different textured phantom (or a slice of
  the anatomy volume), readable by fastMRI's own ``SliceDataset``;
- ``3d``: ``kspace (slabs, C, Z, H, W)`` with ``fft_ndim = 3``;
- ``cine``: ``kspace (series, C, T, H, W)``, a beating-heart phantom, ``fft_ndim = 2`` per frame.

k-space is fully sampled (masks are applied on the fly by the datasets). ``reconstruction_rss`` is
the root-sum-of-squares of the fully sampled (noisy) coil images, as in fastMRI, and the true coil
maps are stored in ``maps``. Files go to ``OUT/{train,val,test}/``.

Realistic priors: ``anatomy`` is a NIfTI volume or ``"mni152"`` (the MNI152 T1 template shipped
inside the ``nilearn`` wheel, extra ``anatomy``); ``coils_from`` is real k-space whose ESPIRiT
maps, fitted once and perturbed per slice, replace the simulated birdcage maps
(:mod:`gleam_mri.physics.real_coils`); ``snr_db="measured"`` adds noise at the level measured on
that scan.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gleam_mri.data.fastmri import (
    inspect_fastmri,
    make_ismrmrd_header,
    read_fastmri,
    write_fastmri,
)
from gleam_mri.physics import anatomy, phantoms, real_coils
from gleam_mri.physics.coils import rss_of_kspace
from gleam_mri.physics.simulate import simulate_multicoil

# Public anatomy that ships inside a Python package: name -> (package, file inside it, and the
# module attribute naming the file, read only when the file has moved in another version).
PACKAGED_ANATOMY = {
    "mni152": (
        "nilearn",
        "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "nilearn.datasets:MNI152_FILE_PATH",
    ),
}

KINDS = ("2d", "3d", "cine")

DEFAULT_SHAPES: dict[str, tuple[int, ...]] = {
    "2d": (128, 128),
    "3d": (24, 64, 48),
    "cine": (12, 96, 96),
}


@dataclass
class SyntheticSpec:
    """What to simulate; ``shape``: ``(H, W)`` (2D), ``(Z, H, W)`` (3D), ``(T, H, W)`` (cine)."""

    kind: str = "2d"
    n_volumes: int = 12
    slices_per_volume: int = 4
    shape: tuple[int, ...] | None = None
    n_coils: int = 8
    snr_db: float | str = 40.0
    anatomy: str | None = None
    coils_from: str | None = None
    seed: int = 0
    splits: dict[str, float] = field(
        default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15}
    )

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.shape is None:
            self.shape = DEFAULT_SHAPES[self.kind]
        self.shape = tuple(int(s) for s in self.shape)
        expected = 2 if self.kind == "2d" else 3
        if len(self.shape) != expected:
            raise ValueError(f"{self.kind} shape needs {expected} sizes, got {self.shape}")
        spatial = self.shape[1:] if self.kind == "cine" else self.shape
        if min(spatial) < 8 or (self.kind == "cine" and self.shape[0] < 2):
            raise ValueError(f"image sizes must be >= 8 (and >= 2 cine frames), got {self.shape}")
        if self.n_volumes < 1 or self.slices_per_volume < 1 or self.n_coils < 1:
            raise ValueError("n_volumes, slices_per_volume and n_coils must be >= 1")
        if self.anatomy is not None and self.kind == "cine":
            raise ValueError("real anatomy is available for 2d and 3d data sets, not for cine")
        if isinstance(self.snr_db, str):
            if self.snr_db != "measured":
                raise ValueError(f"snr_db must be a number or 'measured', got {self.snr_db!r}")
            if self.coils_from is None:
                raise ValueError("snr_db='measured' measures the noise of coils_from: set it")
        elif not np.isfinite(self.snr_db):
            raise ValueError(f"snr_db must be finite, got {self.snr_db!r}")

    @property
    def fft_ndim(self) -> int:
        return 3 if self.kind == "3d" else 2


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Volumes per split by largest remainder; each positive split gets >= 1 when n allows."""
    names = [k for k, v in fractions.items() if v > 0]
    if not names:
        raise ValueError(f"no split has a positive fraction: {fractions}")
    total = sum(fractions[k] for k in names)
    exact = {k: n * fractions[k] / total for k in names}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    by_remainder = sorted(names, key=lambda k: exact[k] - counts[k], reverse=True)
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    for k in names:
        if counts[k] == 0 and n >= len(names):
            donor = max(names, key=lambda d: counts[d])
            counts[donor] -= 1
            counts[k] = 1
    return counts


def _magnitudes(spec: SyntheticSpec, rng: np.random.Generator, volume) -> np.ndarray:
    """Magnitude images ``(slices, *D)`` for one file."""
    s = spec.slices_per_volume
    if spec.kind == "2d":
        if volume is not None:
            return anatomy.anatomy_slices(volume, s, spec.shape, rng)
        return np.stack([phantoms.phantom_2d(spec.shape, rng) for _ in range(s)])
    if spec.kind == "3d":
        if volume is not None:
            return anatomy.anatomy_slabs(volume, s, spec.shape, rng)
        return np.stack([phantoms.phantom_3d(spec.shape, rng) for _ in range(s)])
    t, h, w = spec.shape
    return np.stack([phantoms.cine_phantom(t, (h, w), rng) for _ in range(s)])


def _header(spec: SyntheticSpec) -> bytes:
    h, w = spec.shape[-2:]
    z = spec.shape[0] if spec.kind == "3d" else 1
    return make_ismrmrd_header(
        encoding_size=(h, w, z),
        recon_size=(h, w, z),
        acquisition=f"GLEAM_SYNTHETIC_{spec.kind.upper()}",
        n_coils=spec.n_coils,
    )


def resolve_anatomy(name: str) -> Path:
    """The NIfTI file of ``anatomy``: a path, or a name of :data:`PACKAGED_ANATOMY`."""
    if name not in PACKAGED_ANATOMY:
        return Path(name)
    package, inside, attribute = PACKAGED_ANATOMY[name]
    import importlib
    from importlib.util import find_spec  # finds the package without importing it

    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"anatomy {name!r} ships with the {package} package, which is not installed: "
            f"pip install {package} (or gleam-mri[anatomy])"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inside
    if not path.is_file():
        module, attr = attribute.split(":")
        path = Path(getattr(importlib.import_module(module), attr, ""))
    if not path.is_file():
        raise ValueError(f"anatomy {name!r}: {package} has no {inside} (another version?)")
    return path


def _coil_maps(
    spec: SyntheticSpec, magnitude: np.ndarray, field, rng: np.random.Generator
) -> np.ndarray | None:
    """Real coil maps ``(C, *spatial)`` for one image (``None``: simulated birdcage maps)."""
    if field is None:
        return None
    support = real_coils.object_support(magnitude)
    if spec.kind == "cine":
        support = support.any(axis=0)
    spatial = magnitude.shape[1:] if spec.kind == "cine" else magnitude.shape
    return real_coils.real_coil_maps(field, spec.n_coils, spatial, rng, support=support)


def simulate_volume(
    spec: SyntheticSpec,
    rng: np.random.Generator,
    volume: np.ndarray | None = None,
    field: real_coils.CoilField | None = None,
    snr_db: float | None = None,
) -> dict:
    """Simulate one file's arrays: ``kspace (S, C, *D)``, ``maps (S, C, *D)``, ``rss (S, *D)``.

    ``field``: real coil sensitivities (default: perturbed birdcage maps); ``snr_db`` overrides
    ``spec.snr_db`` (needed when that is ``"measured"``).
    """
    mags = _magnitudes(spec, rng, volume)
    snr = spec.snr_db if snr_db is None else snr_db
    if isinstance(snr, str):
        raise ValueError("snr_db='measured': pass the measured value as snr_db")
    kspace, maps, rss = [], [], []
    for magnitude in mags:
        coil_maps = _coil_maps(spec, magnitude, field, rng)
        acq = simulate_multicoil(
            magnitude, spec.n_coils, spec.fft_ndim, rng, snr_db=snr, maps=coil_maps
        )
        kspace.append(acq.kspace)
        maps.append(acq.maps)
        image = rss_of_kspace(torch.from_numpy(acq.kspace), spec.fft_ndim, dim=0)
        rss.append(image.numpy().astype(np.float32))
    return {"kspace": np.stack(kspace), "maps": np.stack(maps), "rss": np.stack(rss)}


def write_synthetic_dataset(
    out_dir: str | Path, spec: SyntheticSpec, progress: bool = True
) -> dict[str, list[Path]]:
    """Simulate ``spec`` and write it to ``out_dir/{train,val,test}/*.h5``; returns the files.

    A ``dataset.json`` beside the splits records the spec, so a data set can be regenerated.
    """
    out = Path(out_dir)
    counts = split_counts(spec.n_volumes, spec.splits)
    volume = anatomy.load_magnitude_volume(resolve_anatomy(spec.anatomy)) if spec.anatomy else None
    record = asdict(spec)
    field, snr_db = None, spec.snr_db
    if spec.coils_from:
        kspace = load_real_kspace(spec.coils_from)
        field = real_coils.estimate_coil_field(kspace, source=Path(spec.coils_from).name)
        if spec.n_coils > field.n_coils:
            raise ValueError(
                f"n_coils={spec.n_coils} but {spec.coils_from} has {field.n_coils} coils"
            )
        record["coil_field_residual"] = field.residual
        if snr_db == "measured":
            noise = real_coils.measure_noise(kspace)
            snr_db = noise.snr_db
            record["snr_db_measured"] = {"snr_db": noise.snr_db, "method": noise.method}
    root_rng = np.random.default_rng(spec.seed)
    seeds = root_rng.integers(0, 2**31 - 1, size=spec.n_volumes)
    header = _header(spec)
    written: dict[str, list[Path]] = {name: [] for name in counts}
    jobs = [(name, i) for name, n in counts.items() for i in range(n)]
    bar = tqdm(jobs, desc=f"simulating {spec.kind}", unit="file", disable=not progress)
    for index, (name, i) in enumerate(bar):
        rng = np.random.default_rng(seeds[index])
        arrays = simulate_volume(spec, rng, volume, field, snr_db)
        split_dir = out / name
        split_dir.mkdir(parents=True, exist_ok=True)
        path = split_dir / f"{spec.kind}_{name}_{i:03d}.h5"
        write_fastmri(
            path,
            kspace=arrays["kspace"],
            reconstruction_rss=arrays["rss"],
            header=header,
            attrs={
                "acquisition": f"GLEAM_SYNTHETIC_{spec.kind.upper()}",
                "patient_id": f"synthetic-{spec.seed}-{index}",
            },
            maps=arrays["maps"],
            kind=spec.kind,
        )
        written[name].append(path)
    record["counts"] = counts
    (out / "dataset.json").write_text(json.dumps(record, indent=2))
    return written


def parse_shape(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"128x96"`` or ``"24,64,48"`` -> a tuple of ints (``None`` passes through)."""
    if text is None or not isinstance(text, str):
        return None if text is None else tuple(int(t) for t in text)
    parts = text.replace("x", ",").split(",")
    try:
        return tuple(int(p) for p in parts if p.strip())
    except ValueError as err:
        raise ValueError(f"cannot read a shape from {text!r}; write it like 128x96") from err


def load_real_kspace(path: str | Path) -> np.ndarray:
    """Real multi-coil k-space, complex64 ``(C, H, W)``, DC at ``N // 2``.

    ``.npy``: an array ``(C, H, W)`` (unsampled locations are zeros). ``.h5``: a 2D file in the
    fastMRI layout (:func:`gleam_mri.data.fastmri.read_fastmri`), its middle slice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"k-space file not found: {path}")
    if path.suffix == ".npy":
        kspace = np.load(path)
        if kspace.ndim == 4 and kspace.shape[0] == 1:
            kspace = kspace[0]
    elif path.suffix in (".h5", ".hdf5"):
        info = inspect_fastmri(path)
        if info.kind != "2d":
            raise ValueError(f"{path}: coil maps are read from 2d files, this one is {info.kind}")
        kspace = read_fastmri(path, slices=info.num_slices // 2).kspace[0]
    else:
        raise ValueError(f"{path}: expected a .npy (C, H, W) or a fastMRI .h5 k-space file")
    if not np.iscomplexobj(kspace) or kspace.ndim != 3:
        raise ValueError(
            f"{path}: need complex k-space (C, H, W), got {kspace.dtype} {kspace.shape}"
        )
    if not np.all(np.isfinite(kspace)):
        raise ValueError(f"{path}: k-space contains NaN or infinite values")
    return kspace.astype(np.complex64, copy=False)


def coil_field_from_file(path: str | Path, **options: object) -> real_coils.CoilField:
    """:func:`estimate_coil_field` of :func:`load_real_kspace` ``(path)``."""
    return real_coils.estimate_coil_field(load_real_kspace(path), source=Path(path).name, **options)

"""A 3D and a cine configuration train end to end on simulated data in each format (CPU, tiny).

For each source format (ISMRMRD written by the ``ismrmrd`` package's own writer, BART CFL written
with :func:`write_cfl`, the fastMRI layout directly) and each kind (3d, cine): simulate two fully
sampled volumes, write them in that format, convert them with :func:`gleam_mri.data.convert.convert`
into ``train/`` and ``val/``, then ``fit`` ``configs/synthetic-{3d,cine}.yaml`` shrunk to tiny
sizes for 4 steps with ESPIRiT maps (converted files hold no maps).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gleam_mri.data.cfl import gleam_to_cfl, write_cfl
from gleam_mri.data.convert import convert
from gleam_mri.data.fastmri import read_fastmri, write_fastmri
from gleam_mri.physics.phantoms import cine_phantom, phantom_3d
from gleam_mri.physics.simulate import simulate_multicoil
from gleam_mri.training.checkpoint import load_checkpoint
from gleam_mri.training.loop import fit, read_metrics_log
from gleam_mri.training.run_config import load_config

ismrmrd = pytest.importorskip("ismrmrd")
xsd = pytest.importorskip("ismrmrd.xsd")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHAPE = {"3d": (8, 16, 12), "cine": (4, 16, 12)}  # (Z|T, H, W); readout H
N_COILS = 3
MASKS = {
    "3d": "data.mask={name: poisson, acceleration: 2, calib: [4, 4]}",
    "cine": "data.mask={name: cine, acceleration: 2, center_lines: 4}",
}
TINY = [
    "data.maps=espirit",
    "data.batch_size=1",
    "model.unrolls=2",
    "model.features=4",
    "model.blocks=1",
    "strategy.modules=2",
    "train.steps=4",
    "train.val_every=4",
    "train.ckpt_every=4",
    "train.log_every=1",
    "train.tensorboard=false",
    "train.device=cpu",
]


def _simulate(kind: str, seed: int) -> np.ndarray:
    """Fully sampled noisy k-space ``(C, Z|T, H, W)`` complex64 of a phantom."""
    rng = np.random.default_rng(seed)
    depth, h, w = SHAPE[kind]
    image = phantom_3d((depth, h, w), rng) if kind == "3d" else cine_phantom(depth, (h, w), rng)
    fft_ndim = 3 if kind == "3d" else 2
    return simulate_multicoil(image, N_COILS, fft_ndim, rng, snr_db=40.0).kspace


def _limit(n: int) -> object:
    return xsd.limitType(minimum=0, maximum=n - 1, center=n // 2)


def _ismrmrd_header(kind: str) -> str:
    depth, h, w = SHAPE[kind]
    z = depth if kind == "3d" else 1
    space = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=h, y=w, z=z),
        fieldOfView_mm=xsd.fieldOfViewMm(x=float(h), y=float(w), z=float(z)),
    )
    limits = {"kspace_encoding_step_1": _limit(w)}
    if kind == "3d":
        limits["kspace_encoding_step_2"] = _limit(depth)
    else:
        limits["phase"] = _limit(depth)
    encoding = xsd.encodingType(
        encodedSpace=space,
        reconSpace=space,
        encodingLimits=xsd.encodingLimitsType(**limits),
        trajectory=xsd.trajectoryType.CARTESIAN,
    )
    conditions = xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63_500_000)
    header = xsd.ismrmrdHeader(experimentalConditions=conditions)
    header.encoding.append(encoding)
    return xsd.ToXML(header)


def _write_ismrmrd(path: Path, kspace: np.ndarray, kind: str) -> Path:
    """One acquisition per (Z|T, W) line, through the ismrmrd package's writer."""
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(_ismrmrd_header(kind))
    outer = "kspace_encode_step_2" if kind == "3d" else "phase"
    for k in range(kspace.shape[1]):
        for ky in range(kspace.shape[3]):
            line = np.ascontiguousarray(kspace[:, k, :, ky], dtype=np.complex64)  # (C, H)
            acq = ismrmrd.Acquisition.from_array(line)
            acq.idx.kspace_encode_step_1 = ky
            setattr(acq.idx, outer, k)
            dset.append_acquisition(acq)
    dset.close()
    return path


def _write_source(folder: Path, name: str, kspace: np.ndarray, kind: str, fmt: str) -> Path:
    """Write ``kspace`` ``(C, Z|T, H, W)`` as ``fmt``; returns the file ``convert`` reads."""
    if fmt == "ismrmrd":
        return _write_ismrmrd(folder / f"{name}.h5", kspace, kind)
    write_cfl(folder / name, gleam_to_cfl(kspace, kind))
    return folder / f"{name}.cfl"


def _dataset(root: Path, kind: str, fmt: str) -> Path:
    """``root/data/{train,val}`` with one volume each, written as ``fmt`` (converted if raw)."""
    raw_dir, data = root / "raw", root / "data"
    raw_dir.mkdir()
    for split, seed in (("train", 1), ("val", 2)):
        kspace = _simulate(kind, seed)
        out = data / split / f"{split}.h5"
        out.parent.mkdir(parents=True)
        if fmt == "fastmri":
            fft_axes = (-3, -2, -1) if kind == "3d" else (-2, -1)
            rss = np.sqrt((np.abs(_ifft(kspace, fft_axes)) ** 2).sum(0))
            write_fastmri(out, kspace[None], rss[None].astype(np.float32), kind=kind)
        else:
            assert convert(_write_source(raw_dir, split, kspace, kind, fmt), out) == out
        vol = read_fastmri(out)
        assert vol.kind == kind
        np.testing.assert_allclose(vol.kspace[0], kspace, rtol=0, atol=1e-6)
        assert vol.reconstruction_rss is not None and vol.maps is None
    return data


def _ifft(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Centred orthonormal inverse FFT (numpy, independent of gleam_mri.fft)."""
    shifted = np.fft.ifftshift(x, axes=axes)
    return np.fft.fftshift(np.fft.ifftn(shifted, axes=axes, norm="ortho"), axes=axes)


@pytest.mark.parametrize("fmt", ["ismrmrd", "cfl", "fastmri"])
@pytest.mark.parametrize("kind", ["3d", "cine"])
def test_train_on_converted_data(tmp_path, kind, fmt):
    data = _dataset(tmp_path, kind, fmt)
    out = tmp_path / "run"
    overrides = [f"data.root={data}", f"train.out_dir={out}", MASKS[kind], *TINY]
    if kind == "3d":  # the config trains on readout slabs; these volumes have 16 readout rows
        overrides += ["data.slab=8", "data.slab_overlap=2"]
    cfg = load_config(CONFIGS / f"synthetic-{kind}.yaml", overrides)
    assert cfg.data.kind == kind
    ckpt_path = fit(cfg, progress=False)
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt_path == out / "last.pt" and ckpt["step"] == 4 and ckpt["kind"] == kind
    log = read_metrics_log(out)
    train = [r for r in log if "train/loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(math.isfinite(r["train/loss"]) for r in train)
    val = [r for r in log if "val/loss" in r]
    assert [r["step"] for r in val] == [0, 4]
    assert all(math.isfinite(r["val/loss"]) and math.isfinite(r["val/PSNR"]) for r in val)

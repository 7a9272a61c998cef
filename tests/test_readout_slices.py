"""gleam convert --slices readout: 3D Cartesian raw data as 2D slices along the readout.

Run as a script, this file writes small synthetic 3D knee-like ISMRMRD files (the stand-ins of
the tiny-scale rehearsal in docs/paper-scale.md): ``python tests/test_readout_slices.py OUT N``
(``knee00.h5`` ...) or ``OUT NAMES.txt`` (one file per name in the list).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gleam_mri import cli
from gleam_mri.data.cfl import gleam_to_cfl, write_cfl
from gleam_mri.data.convert import convert
from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.data.readout_slices import readout_slices
from gleam_mri.fft import centred_fft
from gleam_mri.physics.coils import birdcage_maps
from gleam_mri.physics.phantoms import phantom_3d

ismrmrd = pytest.importorskip("ismrmrd")
from test_ismrmrd_raw import _header, _limit, _random, _write  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def knee_kspace(rng: np.random.Generator, coils: int, z: int, x: int, y: int) -> np.ndarray:
    """3D k-space ``(C, Z, 2x, Y)`` complex64 of a phantom seen by birdcage coils, the object
    inside the central half of a 2x oversampled readout FOV."""
    image = np.zeros((coils, z, 2 * x, y), np.complex64)
    obj = phantom_3d((z, x, y), rng) * birdcage_maps(coils, (z, x, y)).numpy()
    image[:, :, x // 2 : x // 2 + x] = obj
    return centred_fft(image, (1, 2, 3)).astype(np.complex64)


def write_knee(
    path: Path, kspace: np.ndarray, sampled: np.ndarray | None = None, oversampled: bool = True
) -> Path:
    """ISMRMRD file of 3D k-space ``(C, Z, X, Y)``: one acquisition per sampled ``(kz, ky)``
    (``sampled`` bool ``(Z, Y)``, default all), shuffled; the centres at ``Z // 2``, ``Y // 2``."""
    _, z, x, y = kspace.shape
    sampled = np.ones((z, y), bool) if sampled is None else sampled
    lines = [(kz, ky) for kz in range(z) for ky in range(y) if sampled[kz, ky]]
    order = np.random.default_rng(0).permutation(len(lines))
    acqs = [
        (kspace[:, kz, :, ky], {"kspace_encode_step_1": ky, "kspace_encode_step_2": kz})
        for kz, ky in (lines[i] for i in order)
    ]
    recon = (x // 2 if oversampled else x, y, z)
    xml = _header(
        (x, y, z),
        recon,
        kspace_encoding_step_1=_limit(y - 1, y // 2),
        kspace_encoding_step_2=_limit(z - 1, z // 2),
    )
    return _write(path, xml, acqs)


def expected_slices(kspace: np.ndarray, oversampled: bool = True) -> np.ndarray:
    """The readout slices ``(nx, C, Y, Z)`` of ``(C, Z, X, Y)``, in float64 numpy."""
    hybrid = centred_fft(kspace.astype(np.complex128), (2,), inverse=True)
    x = kspace.shape[2]
    if oversampled:
        hybrid = hybrid[:, :, x // 4 : x // 4 + x // 2]
    return hybrid.transpose(2, 0, 3, 1)


def test_slices_are_the_readout_ifft(tmp_path, rng):
    c, z, x, y = 3, 6, 10, 8
    kspace = knee_kspace(rng, c, z, x, y)
    raw = write_knee(tmp_path / "knee.h5", kspace)
    vol = read_fastmri(convert(raw, tmp_path / "out.h5", slices="readout"))
    want = expected_slices(kspace)
    assert vol.kind == "2d" and vol.kspace.dtype == np.complex64
    assert vol.kspace.shape == (x, c, y, z)
    scale = np.abs(want).max()
    np.testing.assert_allclose(vol.kspace, want, rtol=0, atol=2e-6 * scale)
    images = centred_fft(want, (2, 3), inverse=True)
    rss = np.sqrt((np.abs(images) ** 2).sum(axis=1))
    np.testing.assert_allclose(vol.reconstruction_rss, rss, rtol=0, atol=2e-6 * rss.max())
    # the native 3D conversion (the reader removes the oversampling itself), then the readout IFFT
    native = read_fastmri(convert(raw, tmp_path / "native.h5")).kspace[0]  # (C, Z, x, Y)
    from_native = centred_fft(native, (2,), inverse=True).transpose(2, 0, 3, 1)
    np.testing.assert_allclose(vol.kspace, from_native, rtol=0, atol=2e-6 * scale)
    # the header describes the (ky, kz) slices; W (kz) keeps the step_2 limits
    assert vol.header["encoding_size"] == (y, z, 1) and vol.header["recon_size"] == (y, z, 1)
    assert vol.header["enc_limits_center"] == z // 2 and vol.header["enc_limits_max"] == z - 1
    assert vol.header["recon_fov_mm"] == (float(y), 5.0, 1.0)  # x FOV 10 mm over 10 slices
    assert vol.attrs["gleam_slices"] == "readout" and vol.attrs["sampled_fraction"] == 1.0
    assert vol.maps is None and vol.mask is None


def test_chunks_do_not_change_the_slices(rng):
    kspace = _random(rng, (2, 3, 5, 12, 7))  # (S, C, Z, X, Y): two slabs
    whole = readout_slices(kspace, 6)
    chunked = readout_slices(kspace, 6, chunk_bytes=1)  # one kz plane per chunk
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)
    want = [expected_slices(kspace[s]) for s in range(2)]
    np.testing.assert_allclose(whole, np.concatenate(want), rtol=0, atol=1e-5)


def test_bart_cfl_with_a_kz_axis(tmp_path, rng):
    kspace = _random(rng, (2, 4, 6, 5))  # (C, Z, H, W), no oversampling known
    write_cfl(tmp_path / "vol", gleam_to_cfl(kspace, "3d"))
    vol = read_fastmri(convert(tmp_path / "vol.cfl", tmp_path / "vol.h5", slices="readout"))
    np.testing.assert_allclose(vol.kspace, expected_slices(kspace, False), rtol=0, atol=1e-5)
    write_cfl(tmp_path / "flat", gleam_to_cfl(kspace[:, 0], "2d"))
    with pytest.raises(FastMRIFormatError, match=r"flat\.cfl.*needs a 3D Cartesian"):
        convert(tmp_path / "flat.cfl", tmp_path / "flat.h5", slices="readout")


def test_errors_name_the_file(tmp_path, rng, capsys):
    c, x, y = 2, 8, 6
    flat = _random(rng, (c, x, y))
    acqs = [(flat[:, :, ky], {"kspace_encode_step_1": ky}) for ky in range(y)]
    path = _write(
        tmp_path / "flat2d.h5", _header((x, y, 1), kspace_encoding_step_1=_limit(5, 3)), acqs
    )
    with pytest.raises(FastMRIFormatError, match=r"flat2d\.h5.*needs a 3D Cartesian.*2d"):
        convert(path, tmp_path / "o.h5", slices="readout")
    assert cli.main(["convert", str(path), "-o", str(tmp_path / "o"), "--slices", "readout"]) == 2
    assert "flat2d.h5" in capsys.readouterr().err and not (tmp_path / "o" / "flat2d.h5").exists()
    # several 2D slices (a 3D scan whose partitions sit in the slice counter would read so)
    acqs = [(f, {**fields, "slice": sl}) for f, fields in acqs for sl in range(2)]
    xml = _header((x, y, 1), kspace_encoding_step_1=_limit(5, 3), slice=_limit(1, 0))
    stack = _write(tmp_path / "stack.h5", xml, acqs)
    with pytest.raises(FastMRIFormatError, match=r"stack\.h5.*\(2, 2, 8, 6\).*slice counter"):
        convert(stack, tmp_path / "st.h5", slices="readout")
    # a 3D header, but every acquisition on one kz plane: nothing to split along the readout
    kspace = knee_kspace(rng, 2, 4, 8, 8)
    one_plane = np.zeros((4, 8), bool)
    one_plane[2] = True
    single = write_knee(tmp_path / "single.h5", kspace, one_plane)
    with pytest.raises(FastMRIFormatError, match=r"single\.h5.*sample 1 of 4 kz planes"):
        convert(single, tmp_path / "s.h5", slices="readout")
    with pytest.raises(ValueError, match="slices must be"):
        convert(single, tmp_path / "s.h5", slices="kz")
    with pytest.raises(ValueError, match="only for --slices readout"):
        convert(single, tmp_path / "s.h5", maps="espirit")


def test_undersampled_acquisition_keeps_zeros_and_no_target(tmp_path, rng):
    c, z, x, y = 2, 6, 8, 8
    kspace = knee_kspace(rng, c, z, x, y)
    sampled = rng.random((z, y)) < 0.5
    sampled[z // 2, y // 2] = sampled[0, 0] = True
    path = write_knee(tmp_path / "under.h5", kspace, sampled)
    vol = read_fastmri(convert(path, tmp_path / "u.h5", slices="readout"))
    assert vol.reconstruction_rss is None and vol.mask is None
    assert vol.attrs["sampled_fraction"] == pytest.approx(sampled.mean())
    measured = np.abs(vol.kspace).sum(axis=(0, 1)) > 0  # (Y, Z)
    np.testing.assert_array_equal(measured, sampled.T)
    want = expected_slices(kspace * sampled[None, :, None, :])
    np.testing.assert_allclose(vol.kspace, want, rtol=0, atol=2e-6 * np.abs(want).max())
    with pytest.raises(FastMRIFormatError, match=r"under\.h5.*fully sampled"):
        convert(path, tmp_path / "m.h5", slices="readout", maps="espirit")


def test_espirit_maps_per_slice(tmp_path, rng, one_thread):
    kspace = knee_kspace(rng, 3, 24, 8, 24)
    path = write_knee(tmp_path / "k.h5", kspace)
    vol = read_fastmri(convert(path, tmp_path / "k_maps.h5", slices="readout", maps="espirit"))
    assert vol.maps is not None and vol.maps.shape == vol.kspace.shape == (8, 3, 24, 24)
    energy = (np.abs(vol.maps) ** 2).sum(axis=1)  # 1 inside the ESPIRiT crop, 0 outside
    assert np.isfinite(vol.maps).all() and np.abs(energy - np.round(energy)).max() < 1e-3
    body = vol.reconstruction_rss > 0.1 * vol.reconstruction_rss.max()
    assert body.sum() > 100 and (energy[body] > 0.5).mean() > 0.9  # maps cover the object
    assert vol.attrs["maps_calib"] == 20


def test_paper_config_trains_on_converted_knees(tmp_path, rng, one_thread):
    """The GLEAM paper's PGD knee config, shrunk with --set, trains on converted folders."""
    data = tmp_path / "mridata-knee"
    for split, names in {"train": ["a", "b"], "val": ["c"]}.items():
        raw = [write_knee(tmp_path / f"{n}.h5", knee_kspace(rng, 2, 12, 8, 12)) for n in names]
        args = ["convert", *map(str, raw), "-o", str(data / split), "--slices", "readout"]
        assert cli.main([*args, "--maps", "espirit"]) == 0
    out = tmp_path / "run"
    sets = [
        f"data.root={data}",
        "data.mask={name: poisson, acceleration: 2, calib: [4, 4]}",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.max_val_items=2",
        "model.unrolls=2",
        "strategy.modules=2",
        "model.features=4",
        "model.blocks=1",
        "train.steps=2",
        "train.val_every=2",
        "train.log_every=1",
        "train.image_every=0",
        "train.tensorboard=false",
        "train.device=cpu",
        f"train.out_dir={out}",
    ]
    argv = ["train", str(CONFIGS / "paper-pgd-knee.yaml")]
    assert cli.main([*argv, *(x for s in sets for x in ("--set", s))]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [v for r in rows for k, v in r.items() if k.startswith("train/") and "loss" in k]
    assert {r["step"] for r in rows} >= {1, 2} and losses and np.isfinite(losses).all()
    assert [r["step"] for r in rows if "val/PSNR" in r] == [0, 2]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 2


def _write_stand_ins(out: Path, names: list[str]) -> None:
    """Synthetic 3D knee-like ISMRMRD files ``OUT/<name>.h5`` (8 coils, 16 x 24 x 16 recon
    matrix, 2x readout oversampling), one per name."""
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        rng = np.random.default_rng(i)
        path = write_knee(out / f"{name}.h5", knee_kspace(rng, 8, 16, 16, 24))
        with h5py.File(path, "r") as hf:
            print(path, hf["dataset/data"].shape[0], "acquisitions")


if __name__ == "__main__":  # python tests/test_readout_slices.py OUT (N | NAMES.txt)
    arg = sys.argv[2] if len(sys.argv) > 2 else "4"
    names = (
        Path(arg).read_text().split()
        if Path(arg).is_file()
        else [f"knee{i:02d}" for i in range(int(arg))]
    )
    _write_stand_ins(Path(sys.argv[1]), names)


@pytest.mark.parametrize("partitions", ["slice-kz", "slice-z"])
def test_partitions_in_the_slice_counter(tmp_path, rng, partitions):
    """mridata.org-style files: the partitions in idx.slice (as kz, or as image-space z that
    meddlr's preparation multiplies by (-1)^n and Fourier-transforms), the header's z = 1."""
    c, z, x, y = 2, 6, 8, 8
    kspace = knee_kspace(rng, c, z, x, y)  # (C, Z, 2x, Y), kz centred at Z // 2
    stored = kspace
    if partitions == "slice-z":  # what the file holds: the inverse of meddlr's transform
        sign = ((-1.0) ** np.arange(z))[None, :, None, None]
        stored = (centred_fft(kspace, (1,), inverse=True) * sign).astype(np.complex64)
    acqs = [
        (stored[:, kz, :, ky], {"kspace_encode_step_1": ky, "slice": kz})
        for kz in range(z)
        for ky in range(y)
    ]
    xml = _header(
        (2 * x, y, 1),
        (x, y, 1),
        kspace_encoding_step_1=_limit(y - 1, y // 2),
        slice=_limit(z - 1, 0),
    )
    path = _write(tmp_path / "knee.h5", xml, acqs)
    with pytest.raises(FastMRIFormatError, match=r"knee\.h5.*--partitions slice-z"):
        convert(path, tmp_path / "no.h5", slices="readout")  # read as 6 2D slices: refused
    out = convert(path, tmp_path / "out.h5", slices="readout", partitions=partitions)
    vol = read_fastmri(out)
    np.testing.assert_allclose(
        vol.kspace, expected_slices(kspace), rtol=0, atol=2e-5 * abs(kspace).max()
    )
    native = read_fastmri(convert(path, tmp_path / "vol.h5", partitions=partitions))
    assert native.kspace.shape == (1, c, z, x, y)  # one 3D volume, oversampling removed
    step2 = [(f, {**h, "kspace_encode_step_2": h["slice"] % 2}) for f, h in acqs]
    both = _write(tmp_path / "both.h5", xml, step2)
    with pytest.raises(FastMRIFormatError, match=r"both\.h5.*also vary kspace_encode_step_2"):
        convert(both, tmp_path / "b.h5", partitions=partitions)

"""The Java engine (``java/gleam-engine``, ``gleam.jar``) runs ``gleam export``'s ONNX files as
``gleam recon`` runs the checkpoints: the same images (to 1e-4 of the peak) for PGD and VarNet on
an undersampled file with a mask, maps and a smaller ``reconstruction_rss`` (the crop), the same
NIfTI geometry, and exit code 2 with a one-line message naming the file for broken inputs.

Needs ``java`` and ``java/gleam-engine/target/gleam.jar`` (``bash java/build.sh``, which
``make test`` runs first); skipped without them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from gleam_mri import cli
from gleam_mri.data.fastmri import read_fastmri, write_fastmri
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
JAR = ROOT / "java" / "gleam-engine" / "target" / "gleam.jar"
JAVA = shutil.which("java")

pytestmark = [
    pytest.mark.skipif(
        JAVA is None or not JAR.is_file(),
        reason="needs java and java/gleam-engine/target/gleam.jar (bash java/build.sh)",
    ),
    pytest.mark.usefixtures("one_thread"),
]

MODELS = ("pgd", "varnet")


def jar(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``java -jar gleam.jar ARGS`` (one ONNX Runtime thread), its output captured as text."""
    return subprocess.run(
        [JAVA, "-jar", str(JAR), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def exported(onnx_models) -> dict[str, tuple[Path, Path]]:
    """``name -> (checkpoint, model.onnx)`` for PGD and VarNet, exported by ``gleam export``."""
    return {name: onnx_models[name] for name in MODELS}


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    """An undersampled 2D file: 2 slices, 4 coils, 40 x 32, a line mask (every third line and
    the centre), its k-space masked, true maps, and a 32 x 24 ``reconstruction_rss``."""
    root = tmp_path_factory.mktemp("java-scan")
    spec = SyntheticSpec(n_volumes=1, slices_per_volume=2, shape=(40, 32), n_coils=4)
    write_synthetic_dataset(root / "full", spec, progress=False)
    vol = read_fastmri(next((root / "full").rglob("*.h5")))
    width = vol.kspace.shape[-1]
    lines = np.zeros(width, dtype=bool)
    lines[::3] = True
    lines[width // 2 - 3 : width // 2 + 3] = True
    return write_fastmri(
        root / "scan.h5",
        vol.kspace * lines,
        reconstruction_rss=vol.reconstruction_rss[:, 4:36, 4:28],
        mask=lines.astype(np.float32),
        maps=vol.maps,
    )


def _reconstruction(path: Path) -> np.ndarray:
    with h5py.File(path) as hf:
        return hf["reconstruction"][()]


@pytest.mark.parametrize("name", MODELS)
def test_java_equals_gleam_recon(name, exported, scan, tmp_path):
    ckpt, model = exported[name]
    python_out, java_out = tmp_path / "python", tmp_path / "java"
    args = ["recon", str(ckpt), str(scan), "-o", str(python_out), "--no-undersample"]
    assert cli.main([*args, "--formats", "h5,nii"]) == 0
    done = jar("recon", model, scan, "-o", java_out, "--formats", "h5,nii", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert f"{scan}: slice 1/2" in done.stdout and f"{scan}: slice 2/2" in done.stdout
    assert str(java_out / "scan.h5") in done.stdout

    expected, got = _reconstruction(python_out / "scan.h5"), _reconstruction(java_out / "scan.h5")
    assert got.dtype == np.float32 and got.shape == expected.shape == (2, 32, 24)  # cropped
    error = float(np.abs(got - expected).max())
    print(f"{name}: max |java - python| = {error:.3g}, max |python| = {np.abs(expected).max():.3g}")
    assert error <= 1e-4 * np.abs(expected).max()

    python_nii, java_nii = (nib.load(d / "scan.nii.gz") for d in (python_out, java_out))
    assert java_nii.shape == python_nii.shape == (24, 32, 2)
    np.testing.assert_allclose(java_nii.affine, python_nii.affine)
    np.testing.assert_allclose(java_nii.header.get_zooms(), python_nii.header.get_zooms())
    np.testing.assert_allclose(java_nii.get_fdata(), np.transpose(got, (2, 1, 0)))


def _refused(done: subprocess.CompletedProcess, file: Path, says: str) -> None:
    """Exit code 2 and one line on stderr naming ``file`` and the problem, no stack trace."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(file) in lines[0] and says in lines[0], lines[0]
    assert "Exception" not in done.stderr and "\tat " not in done.stderr


def test_truncated_hdf5_and_corrupt_onnx_exit_2_naming_the_file(exported, scan, tmp_path):
    _, model = exported["pgd"]
    data = scan.read_bytes()
    out = tmp_path / "out"
    for keep in (len(data) // 2, len(data) - 100):
        truncated = tmp_path / f"truncated{keep}.h5"
        truncated.write_bytes(data[:keep])
        _refused(jar("recon", model, truncated, "-o", out), truncated, "truncated")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not HDF5 " * 100)
    _refused(jar("recon", model, garbage, "-o", out), garbage, "not a readable HDF5 file")

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(model.read_bytes()[:2000])  # a model cut short
    _refused(jar("recon", corrupt, scan, "-o", out), corrupt, "not a readable ONNX model")
    absent = tmp_path / "absent.onnx"
    _refused(jar("recon", absent, scan, "-o", out), absent, "no such ONNX file")
    assert not out.exists()  # nothing written


def test_files_the_engine_cannot_reconstruct_exit_2(exported, scan, tmp_path):
    _, model = exported["pgd"]
    vol = read_fastmri(scan)
    out = tmp_path / "out"
    volume = write_fastmri(
        tmp_path / "volume.h5",
        np.repeat(vol.kspace[:, :, None], 3, axis=2),
        maps=np.repeat(vol.maps[:, :, None], 3, axis=2),
        kind="3d",
    )
    _refused(jar("recon", model, volume, "-o", out), volume, "kind mismatch")
    no_maps = write_fastmri(tmp_path / "nomaps.h5", vol.kspace, mask=vol.mask)
    _refused(jar("recon", model, no_maps, "-o", out), no_maps, "gleam convert --maps espirit")
    no_kspace = tmp_path / "nokspace.h5"
    with h5py.File(no_kspace, "w") as hf:
        hf["maps"] = vol.maps
    _refused(jar("recon", model, no_kspace, "-o", out), no_kspace, "no 'kspace' dataset")
    bad_maps = tmp_path / "badmaps.h5"
    with h5py.File(bad_maps, "w") as hf:
        hf["kspace"], hf["maps"] = vol.kspace, vol.maps[:, :2]
    _refused(jar("recon", model, bad_maps, "-o", out), bad_maps, "maps shape")
    assert not out.exists()


def test_a_file_without_maps_runs_once_gleam_convert_adds_them(exported, scan, tmp_path):
    ckpt, model = exported["pgd"]
    vol = read_fastmri(scan)
    bare = write_fastmri(
        tmp_path / "bare.h5", vol.kspace, vol.reconstruction_rss, mask=vol.mask
    )  # no maps: the engine refuses it (above) and names gleam convert --maps espirit
    assert cli.main(["convert", str(bare), "--maps", "espirit", "-o", str(tmp_path / "c")]) == 0
    converted = tmp_path / "c" / "bare.h5"
    args = ["recon", str(ckpt), str(converted), "-o", str(tmp_path / "python"), "--no-undersample"]
    assert cli.main([*args, "--formats", "h5"]) == 0
    done = jar("recon", model, converted, "-o", tmp_path / "java", "--formats", "h5")
    assert done.returncode == 0, done.stderr
    expected = _reconstruction(tmp_path / "python" / "bare.h5")
    got = _reconstruction(tmp_path / "java" / "bare.h5")
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()

"""BART CFL/HDR IO: round trips, files written independently by numpy and by BART, errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gleam_mri.data.cfl import (
    CflFormatError,
    cfl_to_gleam,
    gleam_to_cfl,
    read_cfl,
    read_cfl_header,
    write_cfl,
)
from gleam_mri.data.errors import FastMRIFileNotFoundError
from gleam_mri.fft import fftnc, ifftnc

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="BART is not installed")


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _numpy_write(base: Path, array: np.ndarray, dims_line: str) -> None:
    """An independent writer: a handwritten header and the raw Fortran-order bytes."""
    base.with_name(base.name + ".hdr").write_text(f"# Dimensions\n{dims_line}\n")
    array.astype(np.complex64).ravel(order="F").tofile(base.with_name(base.name + ".cfl"))


def test_round_trip_and_header_padding(tmp_path: Path, rng: np.random.Generator) -> None:
    array = _complex(rng, (6, 5, 1, 3))
    hdr, cfl = write_cfl(tmp_path / "k", array)
    assert hdr.read_text().splitlines() == ["# Dimensions", "6 5 1 3 " + "1 " * 12]
    assert cfl.stat().st_size == array.size * 8
    assert read_cfl_header(tmp_path / "k") == (6, 5, 1, 3) + (1,) * 12
    for name in ("k", "k.cfl", "k.hdr"):
        back = read_cfl(tmp_path / name)
        assert back.dtype == np.complex64
        np.testing.assert_array_equal(back, array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.cfl", "k.hdr"]  # no temporaries


def test_reads_a_file_written_by_plain_numpy(tmp_path: Path, rng: np.random.Generator) -> None:
    array = _complex(rng, (4, 3, 2))
    _numpy_write(tmp_path / "n", array, "4 3 2 1 1")
    back = read_cfl(tmp_path / "n.cfl")
    assert back.shape == (4, 3, 2)
    np.testing.assert_array_equal(back, array)
    # column-major: the first axis varies fastest on disk
    raw = np.fromfile(tmp_path / "n.cfl", dtype=np.complex64)
    assert raw[1] == array[1, 0, 0] and raw[4] == array[0, 1, 0]


def test_extra_header_sections_are_ignored(tmp_path: Path, rng: np.random.Generator) -> None:
    array = _complex(rng, (3, 2))
    _numpy_write(tmp_path / "x", array, "3 2 1 \n# Command\nphantom -k x\n# Creator\nBART")
    np.testing.assert_array_equal(read_cfl(tmp_path / "x"), array)


def test_converters_2d_3d_cine(rng: np.random.Generator) -> None:
    k2 = _complex(rng, (3, 8, 6))  # (C, H, W)
    b2 = gleam_to_cfl(k2)
    assert b2.shape == (8, 6, 1, 3)
    assert b2[5, 4, 0, 2] == k2[2, 5, 4]  # READ = H, PHS1 = W
    np.testing.assert_array_equal(cfl_to_gleam(b2), k2)

    k3 = _complex(rng, (2, 4, 8, 6))  # (C, Z, H, W)
    b3 = gleam_to_cfl(k3, kind="3d")
    assert b3.shape == (8, 6, 4, 2)
    assert b3[7, 1, 3, 1] == k3[1, 3, 7, 1]  # PHS2 = Z
    np.testing.assert_array_equal(cfl_to_gleam(b3), k3)

    kt = _complex(rng, (2, 5, 8, 6))  # (C, T, H, W)
    bt = gleam_to_cfl(kt, kind="cine")
    assert bt.shape == (8, 6, 1, 2, 1, 1, 1, 1, 1, 1, 5)
    assert bt[7, 1, 0, 1, 0, 0, 0, 0, 0, 0, 4] == kt[1, 4, 7, 1]  # TIME = T
    np.testing.assert_array_equal(cfl_to_gleam(bt), kt)


def test_converter_errors(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="MAPS=2"):
        cfl_to_gleam(np.zeros((4, 4, 1, 2, 2), np.complex64))
    with pytest.raises(ValueError, match="3D cine"):
        cfl_to_gleam(np.zeros((4, 4, 2, 1, 1, 1, 1, 1, 1, 1, 3), np.complex64))
    with pytest.raises(ValueError, match="kind"):
        gleam_to_cfl(_complex(rng, (2, 3, 4, 4)))
    with pytest.raises(ValueError, match="kind must be"):
        gleam_to_cfl(_complex(rng, (2, 4, 4)), kind="4d")
    with pytest.raises(ValueError, match="3 axes"):
        gleam_to_cfl(_complex(rng, (2, 3, 4, 4)), kind="2d")


def test_missing_files(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(FastMRIFileNotFoundError, match=r"nothing\.hdr.*not found"):
        read_cfl(tmp_path / "nothing")
    write_cfl(tmp_path / "a", _complex(rng, (2, 2)))
    (tmp_path / "a.cfl").unlink()
    with pytest.raises(FileNotFoundError, match=r"a\.cfl.*not found"):
        read_cfl(tmp_path / "a")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("2 2 1\n", "no '# Dimensions'"),
        ("# Dimensions\n2 x 1\n", "dimensions line"),
        ("# Dimensions\n", "no dimensions"),
        ("# Dimensions\n# Command\n", "no dimensions"),
        ("# Dimensions\n2 0 1\n", ">= 1"),
    ],
)
def test_malformed_header(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "m.hdr").write_text(text)
    np.zeros(4, np.complex64).tofile(tmp_path / "m.cfl")
    with pytest.raises(CflFormatError, match=rf"m\.hdr.*{match}"):
        read_cfl(tmp_path / "m")


def test_size_mismatch_and_nan(tmp_path: Path, rng: np.random.Generator) -> None:
    _numpy_write(tmp_path / "s", _complex(rng, (3, 2)), "3 3 1")
    with pytest.raises(CflFormatError, match=r"s\.cfl.*48 bytes.*need 72"):
        read_cfl(tmp_path / "s")
    bad = _complex(rng, (3, 2))
    bad[1, 1] = np.nan
    _numpy_write(tmp_path / "nan", bad, "3 2")
    with pytest.raises(CflFormatError, match=r"nan\.cfl.*NaN"):
        read_cfl(tmp_path / "nan")
    with pytest.raises(CflFormatError, match="non-finite"):
        write_cfl(tmp_path / "w", bad)
    with pytest.raises(CflFormatError, match="at most 16"):
        write_cfl(tmp_path / "w", np.zeros((1,) * 17, np.complex64))
    assert not list(tmp_path.glob("w*"))


def _bart(*args: str, cwd: Path) -> None:
    subprocess.run(["bart", *args], cwd=cwd, check=True, capture_output=True)


@needs_bart
def test_bart_phantom_and_centred_fft_agree_with_gleam(tmp_path: Path) -> None:
    _bart("phantom", "-k", "-x", "32", "-s", "4", "ksp", cwd=tmp_path)
    ksp = read_cfl(tmp_path / "ksp")
    assert ksp.shape == (32, 32, 1, 4) and ksp.dtype == np.complex64
    _bart("fft", "-u", "-i", "7", "ksp", "img", cwd=tmp_path)
    img = cfl_to_gleam(read_cfl(tmp_path / "img"))  # (C, H, W)
    ours = ifftnc(torch.from_numpy(cfl_to_gleam(ksp)), 2).numpy()
    assert img.shape == ours.shape == (4, 32, 32)
    np.testing.assert_allclose(ours, img, rtol=0, atol=1e-5 * np.abs(img).max())


@needs_bart
@pytest.mark.parametrize("shape", [(6, 5, 7), (10, 8, 3)])  # odd, N = 2 mod 4, N = 0 mod 4
def test_bart_fft_u_equals_fftnc_on_odd_and_even_sizes(
    tmp_path: Path, rng: np.random.Generator, shape: tuple[int, ...]
) -> None:
    x = _complex(rng, (*shape, 2))  # (READ, PHS1, PHS2, COIL)
    write_cfl(tmp_path / "x", x)
    _bart("fft", "-u", "7", "x", "k", cwd=tmp_path)
    k = cfl_to_gleam(read_cfl(tmp_path / "k"))  # (C, Z, H, W)
    ours = fftnc(torch.from_numpy(cfl_to_gleam(x)), 3).numpy()
    np.testing.assert_allclose(ours, k, rtol=0, atol=1e-5 * np.abs(k).max())

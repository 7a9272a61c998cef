"""CG-SENSE and ESPIRiT against BART 0.8 (``bart pics``, ``bart ecalib``); skipped without ``bart``.

BART's analytic phantom gives 8-coil k-space (64 x 64); a random line mask with a 16-line centre
(written with :func:`write_cfl`, applied with ``bart fmac``) undersamples it 3.4-fold.

* ``bart pics -l2 -r LAMBDA -w 1`` solves ``(A^H A + LAMBDA I) x = A^H y`` with the unitary,
  centred FFT, the same problem as :func:`cg_sense` with ``lam=LAMBDA``. ``-w 1`` fixes BART's data
  scaling to 1: by default ``pics`` divides the data by a scale estimated from the zero-filled image
  and returns the image at that scale (``-S`` rescales it back). Measured relative difference with
  200 iterations on both sides: 7e-6 (PSNR 120 dB); asserted: < 1e-4 and > 80 dB.
* ESPIRiT maps from :mod:`gleam_mri.physics.espirit` give a CG-SENSE image no more than 1 dB below
  the BART-maps one (PSNR against the RSS of the fully sampled coil images; measured:
  25.07 dB versus 25.06 dB). BART's ``-t`` threshold acts on squared singular
  values, so ``ecalib -t 0.001`` corresponds to ``threshold = sqrt(0.001)`` here: with ``-c 0.8``
  and that threshold the two crop supports differ by a handful of pixels (5 of about 2,860).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gleam_mri.data.cfl import cfl_to_gleam, read_cfl, write_cfl
from gleam_mri.fft import ifftnc
from gleam_mri.metrics import psnr
from gleam_mri.physics.espirit import espirit_maps
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.classical import cg_sense

pytestmark = pytest.mark.skipif(shutil.which("bart") is None, reason="BART (`bart`) not installed")

N = 64  # matrix size (READ = PHS1 = N)
CALIB = 16  # fully sampled centre lines
LAM = 0.01  # Tikhonov weight, the same for both solvers
ITERS = 200
BART_THRESHOLD, BART_CROP = 0.001, 0.8  # ecalib's defaults, passed explicitly


def _bart(cwd: Path, *args: str) -> None:
    """Run ``bart ARGS`` in ``cwd``; a failure shows BART's own message."""
    done = subprocess.run(["bart", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"bart {' '.join(args)} failed: {done.stderr or done.stdout}"


def _gleam(cwd: Path, name: str) -> torch.Tensor:
    """A BART k-space or maps array as gleam ``(C, H, W)`` complex64."""
    return torch.from_numpy(cfl_to_gleam(read_cfl(cwd / name)))


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> dict:
    """Phantom k-space, its undersampled version, the line mask and BART's ESPIRiT maps."""
    cwd = tmp_path_factory.mktemp("bart")
    rng = np.random.default_rng(3)
    lines = rng.random(N) < 0.1
    lines[N // 2 - CALIB // 2 : N // 2 + CALIB // 2] = True
    write_cfl(cwd / "mask", lines.astype(np.complex64).reshape(1, N))  # (READ=1, PHS1=N)
    _bart(cwd, "phantom", "-k", "-s", "8", "-x", str(N), "full")
    _bart(cwd, "fmac", "full", "mask", "under")
    thr, crop = str(BART_THRESHOLD), str(BART_CROP)
    _bart(cwd, "ecalib", "-m1", "-r", str(CALIB), "-t", thr, "-c", crop, "under", "maps")
    full = _gleam(cwd, "full")
    return {
        "cwd": cwd,
        "y": _gleam(cwd, "under")[None],  # (1, C, H, W)
        "mask": torch.from_numpy(lines.astype(np.float32)),  # (W,)
        "maps": _gleam(cwd, "maps")[None],  # (1, C, H, W)
        "rss": ifftnc(full, 2).abs().pow(2).sum(0).sqrt().numpy(),  # (H, W)
    }


def _sense(scan: dict, maps: torch.Tensor, lam: float = LAM) -> np.ndarray:
    op = SenseOp(maps, scan["mask"], fft_ndim=2)
    return cg_sense(op, scan["y"], lam=lam, max_iter=ITERS, tol=1e-10)[0].numpy()


def test_setup_is_undersampled_and_maps_are_unit_norm(scan):
    y, mask = scan["y"], scan["mask"]
    assert y.shape == (1, 8, N, N) and N / mask.sum() > 2.5  # about 3-fold
    sampled = (y.abs().sum(dim=(0, 1, 2)) > 0).float()
    assert torch.equal(sampled, mask)  # fmac applied the numpy mask along PHS1
    norm = scan["maps"].abs().pow(2).sum(1)[0]
    inside = norm > 0.5
    assert 0.5 < inside.float().mean() < 1.0  # ESPIRiT cropped the background
    torch.testing.assert_close(norm[inside], torch.ones_like(norm[inside]), atol=1e-5, rtol=0)


def test_cg_sense_matches_bart_pics_l2(scan):
    cwd = scan["cwd"]
    _bart(cwd, "pics", "-l2", "-r", str(LAM), "-i", str(ITERS), "-w", "1", "under", "maps", "rec")
    bart_image = read_cfl(cwd / "rec")  # (READ, PHS1) = (H, W)
    ours = _sense(scan, scan["maps"])
    assert bart_image.shape == ours.shape == (N, N)
    rel = np.linalg.norm(ours - bart_image) / np.linalg.norm(bart_image)
    assert rel < 1e-4, f"relative difference to bart pics {rel:.2e}"
    assert psnr(np.abs(bart_image), np.abs(ours)) > 80.0
    # the check discriminates: another lambda (or BART's default data scaling) is far off
    other = _sense(scan, scan["maps"], lam=10 * LAM)
    assert np.linalg.norm(other - bart_image) / np.linalg.norm(bart_image) > 100 * rel
    _bart(cwd, "pics", "-l2", "-r", str(LAM), "-i", str(ITERS), "under", "maps", "scaled")
    scaled = read_cfl(cwd / "scaled")
    assert np.linalg.norm(scaled - bart_image) / np.linalg.norm(bart_image) > 0.5


def test_gleam_espirit_maps_within_1db_of_bart_maps(scan):
    calib_kspace = scan["y"][0]
    ours = espirit_maps(
        calib_kspace, calib_size=CALIB, threshold=BART_THRESHOLD**0.5, crop=BART_CROP
    )[None]
    bart_support = scan["maps"].abs().pow(2).sum(1) > 0.5
    differ = (ours.abs().pow(2).sum(1) > 0.5) ^ bart_support  # eigenvalues right at the crop
    assert differ.sum() < 0.01 * bart_support.sum()
    # per pixel the maps agree up to a phase: |<S_bart, S_gleam>| ~ 1 almost everywhere
    overlap = (scan["maps"].conj() * ours).sum(1).abs()[bart_support]
    assert (overlap > 0.99).float().mean() > 0.98
    psnr_bart = psnr(scan["rss"], np.abs(_sense(scan, scan["maps"])))
    psnr_ours = psnr(scan["rss"], np.abs(_sense(scan, ours)))
    assert psnr_bart > 20.0  # measured 25.1 dB at 3.4-fold undersampling
    assert psnr_ours > psnr_bart - 1.0, f"gleam maps {psnr_ours:.2f} dB, BART {psnr_bart:.2f} dB"

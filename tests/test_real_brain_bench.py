"""``benchmarks/real_brain.py`` on the real k-space of ``../shared/data`` (skipped without it).

The BART tests also need ``bart`` on PATH. Each test runs in a few seconds on 2 cores: ESPIRiT
maps on the 16-coil 128 x 128 brain and on the 8-coil 230 x 180 scan, 100 ``pics`` iterations.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.classical import zero_filled

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "real_brain.py"
_SPEC = importlib.util.spec_from_file_location("real_brain_bench", _PATH)
rb = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = rb  # dataclasses look their module up
_SPEC.loader.exec_module(rb)

# one torch thread: spinning OpenMP threads are slow on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_thread")
needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="BART (`bart`) not installed")


@pytest.fixture(scope="module")
def case4() -> rb.Case:
    if not (rb.SHARED / rb.BRAIN16).is_file():
        pytest.skip("../shared/data is absent on this machine")
    return rb.undersampled_case(rb.SHARED / rb.BRAIN16, acceleration=4, center_fraction=0.08)


def test_undersampled_case_is_4x_normalised_and_consistent(case4):
    assert case4.kspace.shape == (16, 128, 128) and case4.kspace.dtype == torch.complex64
    assert case4.mask.shape == (1, 1, 128) and case4.reference.shape == (128, 128)
    assert 3.8 < case4.acceleration < 4.4 and case4.acceleration == 128 / case4.mask.sum()
    assert case4.info["calib_lines"] >= 10  # 8 % of 128, plus any random neighbour
    unsampled = case4.mask[0, 0] == 0
    assert bool((case4.kspace[..., unsampled] == 0).all())
    peak = zero_filled(case4.op(), case4.kspace[None]).abs().max()
    torch.testing.assert_close(peak, torch.tensor(1.0), rtol=1e-5, atol=0)
    # the reference is the file's RSS on the same scale as the k-space
    vol = read_fastmri(rb.SHARED / rb.BRAIN16)
    np.testing.assert_allclose(case4.reference * case4.scale, vol.reconstruction_rss[0], rtol=1e-5)
    norm = case4.maps.abs().pow(2).sum(0)
    assert 0.4 < float((norm > 0.5).float().mean()) < 0.9  # the head, cropped background


def test_cg_sense_beats_zero_filled_and_fits_the_data(case4):
    zf = rb.score(case4, rb.default_methods(bart=False)["zero-filled"](case4))
    cg = rb.score(case4, rb.cg_sense_method(case4, 1e-2, 30))
    assert cg["PSNR"] > zf["PSNR"] + 3.0  # measured 26.7 vs 20.9 dB
    assert cg["residual"] < 0.6 * zf["residual"]


@needs_bart
def test_bart_cs_is_finite_on_scale_and_beats_zero_filled_at_4x(case4):
    image = rb.bart_cs(case4)
    assert image.shape == (128, 128) and torch.is_complex(image)
    assert bool(torch.isfinite(image).all())
    cs = rb.score(case4, image)
    zf = rb.score(case4, rb.default_methods(bart=False)["zero-filled"](case4))
    assert cs["PSNR"] > zf["PSNR"] + 4.0  # measured 27.7 vs 20.9 dB
    assert 0.9 < float(image.abs().max()) < 1.2  # -S: on the input's scale (peak ~1)


@needs_bart
def test_bart_cs_sign_on_a_230x180_scan_fits_the_data(shared_data):
    case = rb.poisson_case(shared_data / rb.BRAIN8)
    assert case.mask.shape == (1, 230, 180) and 7 < case.acceleration < 9
    image = rb.bart_cs(case)
    # BART's image is -1 times ours at H = 230 (2 mod 4): uncorrected, the residual is ~2
    assert rb.score(case, image)["residual"] < 0.1
    assert rb.score(case, -image)["residual"] > 1.5


def test_run_with_a_plugged_method_writes_json_table_and_grid(case4, tmp_path):
    methods = {
        "zero-filled": rb.default_methods(bart=False)["zero-filled"],
        "magnitude only": lambda c: np.abs(rb.cg_sense_method(c, 1e-2, 20).numpy()),
    }
    sweep = (lambda c, lam: rb.cg_sense_method(c, lam, 20), (1e-3, 1e-1))
    res = rb.run(methods, [case4], {"CG-SENSE": sweep})
    assert [r["method"] for r in res.rows] == ["zero-filled", "magnitude only", "CG-SENSE oracle"]
    plugged, oracle = res.rows[1], res.rows[2]
    assert plugged["residual"] is None and plugged["PSNR"] > res.rows[0]["PSNR"]
    assert oracle["lam"] == 1e-3 and oracle["PSNR"] == max(
        p["PSNR"] for p in res.sweeps["R4"]["CG-SENSE"]
    )
    rb.write_results(tmp_path, res, [case4], "test")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == res.rows and saved["cases"]["R4"]["maps"] == rb.DEFAULT_MAPS.label
    table = (tmp_path / "table.md").read_text()
    assert "| R4 | 4.13 | magnitude only |" in table and "CG-SENSE oracle (lam=0.001)" in table
    assert (tmp_path / "grid-R4.png").stat().st_size > 10_000


def test_case_as_batch_and_as_fastmri_file(case4, tmp_path):
    batch = case4.batch()
    assert batch.kspace.shape == (1, 16, 128, 128) and batch.target.shape == (1, 128, 128)
    op = SenseOp(batch.maps, batch.mask)
    torch.testing.assert_close(op.adjoint(batch.kspace), case4.op().adjoint(case4.kspace[None]))
    vol = read_fastmri(case4.write_h5(tmp_path / "r4.h5"))
    np.testing.assert_array_equal(vol.mask, case4.mask.reshape(-1).numpy())
    np.testing.assert_allclose(vol.kspace[0], (case4.kspace * case4.scale).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"line masks"):
        rb.Case("p", case4.kspace, torch.ones(1, 128, 128), case4.maps, None, 1.0, 1.0).write_h5(
            tmp_path / "p.h5"
        )


def test_adapt_probe_traces_the_psnr_of_the_step_adapt_keeps(case4):
    path = _PATH.parent / "adapt_probe.py"
    spec = importlib.util.spec_from_file_location("adapt_probe_bench", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    small = ["model.features=4", "model.unrolls=2", "model.blocks=1", "model.dc.cg_iters=2"]
    row = probe.probe(case4, small, {"steps": 3, "val_every": 1, "average": 0.5})
    trace = row["trace"]
    assert [t["step"] for t in trace] == [0, 1, 2, 3] and row["steps"] == 3
    kept = next(t for t in trace if t["step"] == row["kept_step"])
    assert kept["val_loss"] == min(t["val_loss"] for t in trace)  # adapt keeps the lowest loss
    assert row["PSNR"] == pytest.approx(kept["PSNR"], abs=1e-3)  # the traced image is adapt's
    assert row["best_PSNR_passed"] == max(t["PSNR"] for t in trace) >= row["PSNR"] - 1e-3


def test_real_scans_table_reports_seed_intervals_and_the_maps_chosen(tmp_path):
    path = _PATH.parent / "real_scans.py"
    spec = importlib.util.spec_from_file_location("real_scans_bench", path)
    scans = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scans)
    if not (rb.SHARED / scans.SCANS["sphere-se-32ch"]).is_file():
        pytest.skip("../shared/data is absent on this machine")
    assert not scans.feasible("24 lines", 64, 4) and scans.feasible("8% centre", 64, 8)
    mean, half = scans.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(2.4841, abs=1e-3)  # t(0.975, 2) / sqrt(3)
    args = ["--out", str(tmp_path), "--scans", "sphere-se-32ch", "--seeds", "0", "1"]
    scans.main([*args, "--accelerations", "4", "--adapt-scans", "none", "--no-bart"])
    table = json.loads((tmp_path / "results.json").read_text())["table"]
    methods = {t["method"] for t in table}
    assert {"zero-filled RSS", "CS (project), held-out", "prior alone"} <= methods
    assert all(t["seeds"] == 2 and t["family"] == "8% centre" for t in table)  # 24 lines: none
    assert all(t["maps"] and "/2" in t["maps"] for t in table)
    report = (tmp_path / "table.md").read_text()
    assert "24 lines, 4x: the centre alone exceeds" in report
    assert (tmp_path / "grid-sphere-se-32ch-R4.png").is_file()

"""Command-line smoke tests: simulate -> info -> baseline, the demo, and error reporting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gleam_mri import cli, demo
from gleam_mri.data.synthetic import SyntheticSpec

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml"


def test_simulate_info_baseline(tmp_path, capsys):
    data = tmp_path / "data"
    args = ["simulate", str(data), "--n", "3", "--slices", "2", "--shape", "48x40", "--quiet"]
    assert cli.main([*args, "--coils", "4"]) == 0
    assert "test: 1 files" in capsys.readouterr().out
    files = sorted((data / "test").glob("*.h5"))
    assert cli.main(["info", str(files[0])]) == 0
    assert "kind='2d'" in capsys.readouterr().out
    out = tmp_path / "metrics.json"
    assert cli.main(["baseline", str(data), "--quiet", "--iters", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| zero-filled |" in printed and "| cg-sense |" in printed
    rows = json.loads(out.read_text())
    assert set(rows) == {"zero-filled", "cg-sense"}
    assert rows["cg-sense"][0]["file"] == files[0].name
    assert 0 < rows["cg-sense"][0]["SSIM"] <= 1


@pytest.mark.parametrize("kind,shape", [("3d", "12x24x20"), ("cine", "6x32x28")])
def test_baseline_3d_and_cine(tmp_path, capsys, kind, shape):
    data = tmp_path / kind
    args = ["simulate", str(data), "--kind", kind, "--n", "3", "--slices", "1", "--shape", shape]
    assert cli.main([*args, "--coils", "4", "--quiet"]) == 0
    assert cli.main(["baseline", str(data), "--acceleration", "3", "--iters", "5", "--quiet"]) == 0
    assert "| cg-sense |" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert cli.main(["baseline", str(tmp_path)]) == 2
    assert "no .h5 files" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    assert cli.main(["info", str(bad)]) == 2
    assert "bad.h5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["simulate", str(tmp_path), "--kind", "4d"])


def test_help_of_every_command(capsys):
    for command in ["simulate", "baseline", "info", "train", "eval", "recon", "demo"]:
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
        assert "usage: gleam" in capsys.readouterr().out


def test_demo_writes_report(tmp_path, monkeypatch, capsys):
    small = SyntheticSpec(n_volumes=3, slices_per_volume=2, shape=(48, 40), n_coils=4)
    monkeypatch.setattr(demo, "DEMO_SPEC", small)
    args = ["demo", "--out", str(tmp_path), "--quiet", "--config", str(DEMO_CONFIG)]
    for s in ["train.steps=3", "model.features=4", "model.blocks=1", "train.tensorboard=false"]:
        args += ["--set", s]
    assert cli.main(args) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| cg-sense |" in report and "| GLEAM PGD |" in report and "images.png" in report
    assert (tmp_path / "images.png").stat().st_size > 1000
    assert (tmp_path / "last.pt").exists()
    # a second run reuses the data set and the trained network
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "using the existing synthetic data set" in printed
    assert "using the trained network" in printed

"""``gleam export`` and the ONNX Runtime engine: every 2D network round-trips (onnxruntime equals
PyTorch to 1e-4 at two image sizes and coil counts through one file), ``gleam recon`` writes the
same images with either engine, and bad model files get clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import ONNX_MODELS, untrained_checkpoint
from gleam_mri import cli
from gleam_mri.crop import center_slices
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.fft import _shift
from gleam_mri.inference import load_run
from gleam_mri.models.varnet import centred_block
from gleam_mri.onnx.engine import OnnxEngine
from gleam_mri.onnx.export import example_inputs
from gleam_mri.onnx.graph import INPUTS, ReconstructionGraph
from gleam_mri.physics.espirit import find_calibration_size

onnxruntime = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=sorted(ONNX_MODELS))
def exported(request, onnx_models) -> tuple[Path, Path]:
    """``(checkpoint, model.onnx)`` of each network, exported by ``gleam export``."""
    return onnx_models[request.param]


def test_the_graph_equals_pytorch_at_other_sizes_and_coil_counts(exported):
    ckpt, model = exported
    run, _ = load_run(ckpt, "cpu")
    graph = ReconstructionGraph(run.net.eval(), 2)
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for coils, height, width, batch in ((3, 41, 37, 1), (6, 64, 50, 2)):  # odd sizes too
        inputs = example_inputs(coils, height, width, batch, seed=5)
        (image,) = session.run(None, {k: v.numpy() for k, v in zip(INPUTS, inputs, strict=True)})
        with torch.no_grad():
            expected = graph(*inputs).numpy()
        assert image.shape == (batch, height, width, 2)
        assert np.abs(image - expected).max() <= 1e-4 * np.abs(expected).max()
    engine = OnnxEngine(model)
    assert (engine.kind, engine.model) == ("2d", run.cfg.model.name)
    assert int(engine.metadata["iterations"]) == len(run.net)


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("onnx-scan")
    spec = SyntheticSpec(n_volumes=1, slices_per_volume=2, shape=(40, 32), n_coils=4)
    write_synthetic_dataset(root, spec, progress=False)
    return next(root.rglob("*.h5"))


def test_recon_writes_the_same_images_with_either_engine(exported, scan, tmp_path):
    ckpt, model = exported
    for source, out in ((ckpt, "t"), (model, "o")):
        args = ["recon", str(source), str(scan), "-o", str(tmp_path / out), "--formats", "h5"]
        assert cli.main(args) == 0
    with h5py.File(tmp_path / "t" / scan.name) as a, h5py.File(tmp_path / "o" / scan.name) as b:
        torch_image, onnx_image = a["reconstruction"][()], b["reconstruction"][()]
    assert onnx_image.shape == torch_image.shape
    assert np.abs(onnx_image - torch_image).max() <= 1e-4 * np.abs(torch_image).max()


def test_bad_model_files_are_refused_with_their_name(tmp_path, scan, capsys):
    import onnx
    from onnx import TensorProto, helper

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])  # fmt: skip
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), foreign)
    for bad, says in ((tmp_path / "absent.onnx", "no such"), (garbage, "not a readable"),
                      (foreign, "not a network written by gleam export")):  # fmt: skip
        out = tmp_path / "out"
        assert cli.main(["recon", str(bad), str(scan), "-o", str(out), "--formats", "h5"]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and says in err
        assert not out.exists()  # nothing written


def test_export_refuses_3d_networks_and_keeps_an_existing_file(tmp_path, capsys):
    ckpt = untrained_checkpoint(tmp_path / "3d.pt", {"name": "pgd", **ONNX_MODELS["pgd"]}, "3d")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"kept")
    assert cli.main(["export", str(ckpt), "-o", str(out)]) == 2
    assert "3d network" in capsys.readouterr().err and out.read_bytes() == b"kept"


def test_the_exportable_pieces_equal_the_ones_they_stand_for():
    g = torch.Generator().manual_seed(0)
    for n in (5, 6):
        x = torch.randn(3, n, n + 1, dtype=torch.complex64, generator=g)
        assert torch.equal(_shift(x, (-2, -1), False), torch.fft.fftshift(x, dim=(-2, -1)))
        assert torch.equal(_shift(x, (-2, -1), True), torch.fft.ifftshift(x, dim=(-2, -1)))
    for _ in range(300):  # VarNet's calibration block from a line mask
        n = int(torch.randint(2, 30, (1,), generator=g))
        line = (torch.rand(n, generator=g) < torch.rand(1, generator=g)).float()
        line[n // 2] = 1
        _, width = find_calibration_size(line.view(1, n), 2, (5, n))
        expected = torch.zeros(n)
        expected[center_slices((n,), (width,), keep_dc=True)[0]] = 1
        assert torch.equal(centred_block(line), expected)


def test_serve_runs_an_onnx_model_as_recon_does(exported, scan, tmp_path):
    from fastapi.testclient import TestClient

    from gleam_mri.serve.app import create_app
    from gleam_mri.serve.settings import ServeSettings
    from test_serve import submit, wait

    ckpt, model = exported
    app = create_app(ServeSettings({"m": model}, tmp_path / "serve", device="cpu"))
    try:
        with TestClient(app) as client:
            assert client.get("/v1/models").json()["models"][0]["engine"] == "onnx"
            job = wait(client, submit(client, scan, scan.name, formats="h5")["id"])
            assert job["state"] == "done", job["error"]
            got = client.get(f"/v1/reconstructions/{job['id']}/result").content
    finally:
        app.state.store.close()
    (tmp_path / "got.h5").write_bytes(got)
    args = ["recon", str(ckpt), str(scan), "-o", str(tmp_path / "t"), "--formats", "h5"]
    assert cli.main(args) == 0
    with h5py.File(tmp_path / "got.h5") as a, h5py.File(tmp_path / "t" / scan.name) as b:
        served, expected = a["reconstruction"][()], b["reconstruction"][()]
    assert np.abs(served - expected).max() <= 1e-4 * np.abs(expected).max()

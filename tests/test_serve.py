"""gleam serve in-process (FastAPI TestClient): every route, token, limits, bad uploads, and
results identical to gleam recon's."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gleam_mri import cli
from gleam_mri.data.cfl import gleam_to_cfl, write_cfl
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.inference import reconstruct_file
from gleam_mri.serve.app import create_app
from gleam_mri.serve.models import load_models, parse_model_specs
from gleam_mri.serve.settings import ServeSettings
from test_serve_support import tiny_checkpoint, tiny_scans

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "last.pt")


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    return tiny_scans(tmp_path_factory.mktemp("scans"))[0]


@contextmanager
def service(ckpt: Path, data_dir: Path, **options) -> Iterator[TestClient]:
    """The app with one model ``demo`` and the token, started (worker running)."""
    settings = ServeSettings({"demo": ckpt}, data_dir, device="cpu", token=TOKEN, **options)
    app = create_app(settings)
    try:
        with TestClient(app, headers=AUTH) as client:
            yield client
    finally:
        app.state.store.close()


def submit(client: TestClient, path: Path, name: str = "scan.h5", **fields) -> dict:
    r = client.post("/v1/reconstructions", files={"file": (name, path.read_bytes())}, data=fields)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/reconstructions/{r.json()['id']}"
    return r.json()


def wait(client: TestClient, job_id: str, states=("done", "failed"), timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/reconstructions/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} still {job['state']}")


def assert_error(r, status: int, match: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    assert match in body["detail"], body["detail"]


def test_token_guards_every_route_but_healthz(ckpt, tmp_path):
    with service(ckpt, tmp_path) as client:
        routes = ["/v1/models", "/metrics", "/openapi.json", "/v1/reconstructions/x"]
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
            for route in routes:
                r = client.get(route, headers=headers)
                assert_error(r, 401, "bearer token")
                assert r.headers["www-authenticate"] == "Bearer"
            r = client.post("/v1/reconstructions", headers=headers, files={"file": ("a.h5", b"x")})
            assert_error(r, 401, "bearer token")
            assert_error(client.delete("/v1/reconstructions/x", headers=headers), 401, "token")
        assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}
        assert client.get("/v1/models").status_code == 200
        schema = client.get("/openapi.json").json()
        assert "/v1/reconstructions" in schema["paths"]
        assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_models_route(ckpt, tmp_path):
    with service(ckpt, tmp_path) as client:
        assert client.get("/v1/models").json() == {
            "models": [
                {
                    "name": "demo",
                    "kind": "2d",
                    "model": "pgd",
                    "strategy": "greedy",
                    "iterations": 2,
                    "acceleration": 4.0,
                    "device": "cpu",
                    "engine": "torch",
                }
            ]
        }


def test_results_are_those_of_gleam_recon(ckpt, scan, tmp_path):
    """h5 equals reconstruct_file's (undersampled and not); nii, png and the DICOM zip too."""
    with service(ckpt, tmp_path / "serve") as client:
        job = submit(client, scan, scan.name, formats="h5,nii,png,dcm")
        assert job["state"] in ("queued", "running") and job["file_name"] == scan.name
        full = submit(client, scan, scan.name, formats="h5", undersample="false")
        job = wait(client, job["id"])
        assert job["state"] == "done", job["error"]
        assert job["progress"] == {"done": 2, "total": 2} and job["error"] is None
        assert job["timings"]["running_s"] > 0 and job["finished_at"] is not None
        url = f"/v1/reconstructions/{job['id']}/result"
        results = {f: client.get(url, params={"format": f}) for f in ("h5", "nii", "png", "dcm")}
        full = wait(client, full["id"])
        full_h5 = client.get(f"/v1/reconstructions/{full['id']}/result")  # default: first
        metrics = client.get("/metrics").text
    for fmt, ext in {"h5": ".h5", "nii": ".nii.gz", "png": ".png", "dcm": "_dicom.zip"}.items():
        r = results[fmt]
        assert r.status_code == 200
        assert r.headers["content-disposition"] == f'attachment; filename="{scan.stem}{ext}"'
        (tmp_path / f"got{ext}").write_bytes(r.content)
    assert results["h5"].headers["content-type"] == "application/x-hdf5"
    assert results["png"].content.startswith(b"\x89PNG")
    for undersample, got in ((True, tmp_path / "got.h5"), (False, io.BytesIO(full_h5.content))):
        ref_dir = tmp_path / f"ref{undersample}"
        reconstruct_file(ckpt, scan, ref_dir, ("h5",), undersample=undersample, device="cpu")
        with h5py.File(got) as hf, h5py.File(ref_dir / f"{scan.stem}.h5") as ref:
            assert hf["reconstruction"].dtype == np.float32
            np.testing.assert_allclose(hf["reconstruction"][()], ref["reconstruction"][()], 1e-6)
    with zipfile.ZipFile(tmp_path / "got_dicom.zip") as zf:
        assert len(zf.namelist()) == 2 and all(n.endswith(".dcm") for n in zf.namelist())
    assert nib.load(tmp_path / "got.nii.gz").shape == (24, 32, 2)
    assert 'gleam_jobs{state="done"} 2.0' in metrics
    assert "gleam_jobs_submitted_total 2.0" in metrics and "gleam_queue_length 0.0" in metrics
    assert "gleam_reconstruction_seconds_count 2.0" in metrics


def test_bart_upload_with_its_header(ckpt, scan, tmp_path):
    write_cfl(tmp_path / "raw", gleam_to_cfl(read_fastmri(scan).kspace[0], "2d"))
    with service(ckpt, tmp_path / "serve") as client:
        cfl = ("raw.cfl", (tmp_path / "raw.cfl").read_bytes())
        r = client.post("/v1/reconstructions", files={"file": cfl})
        assert_error(r, 400, ".hdr")
        files = {"file": cfl, "header": ("raw.hdr", (tmp_path / "raw.hdr").read_bytes())}
        r = client.post("/v1/reconstructions", files=files, data={"formats": "nii"})
        job = wait(client, r.json()["id"])
        assert job["state"] == "done", job["error"]
        r = client.get(f"/v1/reconstructions/{job['id']}/result", params={"format": "nii"})
        assert r.headers["content-disposition"] == 'attachment; filename="raw.nii.gz"'


def test_bad_requests_get_one_line_4xx(ckpt, scan, tmp_path):
    with service(ckpt, tmp_path) as client:
        post = client.post
        url = "/v1/reconstructions"
        good = {"file": ("scan.h5", scan.read_bytes())}
        assert_error(post(url, files={"file": ("scan.h5", b"")}), 400, "empty")
        assert_error(post(url, data={"model": "demo"}, files={"x": ("a", b"1")}), 400, "'file'")
        assert_error(post(url, files=good, data={"model": "nope"}), 400, "unknown model 'nope'")
        assert_error(post(url, files=good, data={"formats": "h5,jpg"}), 400, "formats 'h5,jpg'")
        assert_error(post(url, files=good, data={"undersample": "maybe"}), 400, "undersample")
        twice = {"formats": ["h5", "nii"], "comment": ["a", "b"]}  # unknown fields: ignored
        assert_error(post(url, files=good, data=twice), 400, "'formats' is given twice")
        assert_error(post(url, content=b"{}"), 400, "multipart/form-data")
        bad = b"--xx\r\nContent-Disposition: form-data; name=file\r\n\r\nabc"  # no closing
        headers = {"content-type": "multipart/form-data; boundary=xx"}
        assert_error(post(url, content=bad, headers=headers), 400, "malformed multipart")
        for method in (client.get, client.delete):
            assert_error(method(f"{url}/nope"), 404, "no job 'nope'")
        assert_error(client.get(f"{url}/nope/result"), 404, "no job")
        job = wait(client, submit(client, scan)["id"])
        result = f"{url}/{job['id']}/result"
        assert_error(client.get(result, params={"format": "jpg"}), 400, "unknown format")
        assert_error(client.get(result, params={"format": "png"}), 400, "did not ask for 'png'")
        assert_error(client.get("/v2/nothing"), 404, "Not Found")
        assert not list((tmp_path / "tmp").iterdir())  # rejected uploads leave nothing


def test_malformed_uploads_fail_their_job_not_the_service(ckpt, scan, tmp_path):
    data = scan.read_bytes()
    uploads = {
        "truncated.h5": data[: len(data) // 2],
        "text.h5": b"this is not HDF5\n" * 10,
        "scan.xyz": data,
        "../../etc/evil.dat": b"\x00" * 100,
    }
    with service(ckpt, tmp_path) as client:
        jobs = {}
        for name, content in uploads.items():
            r = client.post("/v1/reconstructions", files={"file": (name, content)})
            assert r.status_code == 202, r.text
            jobs[name] = r.json()["id"]
        for name, job_id in jobs.items():
            job = wait(client, job_id)
            assert job["state"] == "failed", name
            assert job["error"] and "\n" not in job["error"], job["error"]
            assert str(tmp_path) not in job["error"]  # the stored path is not shown
            assert_error(client.get(f"/v1/reconstructions/{job_id}/result"), 409, "failed")
        assert wait(client, jobs["scan.xyz"])["file_name"] == "scan.xyz"
        assert wait(client, jobs["../../etc/evil.dat"])["file_name"] == "evil.dat"
        assert client.get("/healthz").status_code == 200
        assert wait(client, submit(client, scan)["id"])["state"] == "done"
    stored = sorted(p.name for p in (tmp_path / "jobs").glob("*/input*"))
    assert stored == ["input.dat", "input.h5", "input.h5", "input.h5", "input.xyz"]


def test_limits_queue_cancel_and_timeout(ckpt, scan, tmp_path):
    """413 (by Content-Length and while streaming), 429, 409 before done, DELETE of a running
    job, and the per-job time limit."""
    with service(
        ckpt, tmp_path, max_upload_mb=0.1, max_queue=1, job_delay=0.3, job_timeout=0.5
    ) as client:
        big = {"file": ("scan.h5", b"\x00" * 200_000)}
        assert_error(client.post("/v1/reconstructions", files=big), 413, "0.1 MiB")

        def chunks():  # no Content-Length: the limit is enforced as the body streams
            yield b"--bb\r\nContent-Disposition: form-data; name=file; filename=a.h5\r\n\r\n"
            for _ in range(200):
                yield b"\x00" * 1000

        headers = {"content-type": "multipart/form-data; boundary=bb"}
        r = client.post("/v1/reconstructions", content=chunks(), headers=headers)
        assert_error(r, 413, "larger than")
        small = tiny_scans(tmp_path / "small", shape=(16, 12), slices=3)[0]
        job = submit(client, small)
        r = client.post("/v1/reconstructions", files={"file": ("b.h5", small.read_bytes())})
        assert_error(r, 429, "queue is full")
        running = wait(client, job["id"], states=("running",))
        assert_error(client.get(f"/v1/reconstructions/{job['id']}/result"), 409, "no result yet")
        assert client.delete(f"/v1/reconstructions/{job['id']}").status_code == 204
        assert running["state"] == "running"
        assert_error(client.get(f"/v1/reconstructions/{job['id']}"), 404, "no job")
        assert not (tmp_path / "jobs" / job["id"]).exists()
        slow = wait(client, submit(client, small)["id"])  # 3 slices x 0.3 s > 0.5 s
        assert slow["state"] == "failed" and "--job-timeout" in slow["error"]
        assert client.delete(f"/v1/reconstructions/{slow['id']}").status_code == 204
        assert_error(client.delete(f"/v1/reconstructions/{slow['id']}"), 404, "no job")
        time.sleep(0.4)
        assert not (tmp_path / "jobs" / job["id"]).exists()


def test_model_options_are_checked_before_serving(ckpt, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"expected NAME=CKPT"):
        parse_model_specs(["demo"])
    with pytest.raises(ValueError, match=r"given twice"):
        parse_model_specs([f"a={ckpt}", f"a={ckpt}"])
    with pytest.raises(ValueError, match=r"the name must be"):
        parse_model_specs([f"../a={ckpt}"])
    with pytest.raises(FileNotFoundError, match=r"no checkpoint file .*missing\.pt"):
        parse_model_specs([f"a={tmp_path / 'missing.pt'}"])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot load the model"):
        load_models(parse_model_specs([f"junk={junk}"]), "cpu")
    assert cli.main(["serve", "--model", f"junk={junk}", "--data-dir", str(tmp_path)]) == 2
    assert "junk.pt" in capsys.readouterr().err
    token = tmp_path / "token"
    token.write_text("  \n")
    args = ["serve", "--model", f"a={ckpt}", "--token-file", str(token)]
    assert cli.main(args) == 2
    assert "is empty" in capsys.readouterr().err

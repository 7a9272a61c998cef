"""gleam serve as a real process: SIGKILLed while a job runs and started again on the same
--data-dir, it loses nothing: the job runs again to the right result, finished results stay."""

from __future__ import annotations

import io
import signal
import time

import h5py
import httpx
import numpy as np

from gleam_mri.inference import reconstruct_file
from test_serve_support import running_service, tiny_checkpoint, tiny_scans

TOKEN = "restart-token"


def _wait(client: httpx.Client, job_id: str, until, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/reconstructions/{job_id}").json()
        if until(job):
            return job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id}: {job}")


def _submit(client: httpx.Client, path) -> str:
    r = client.post("/v1/reconstructions", files={"file": (path.name, path.read_bytes())})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _recon(client: httpx.Client, job_id: str) -> np.ndarray:
    r = client.get(f"/v1/reconstructions/{job_id}/result", params={"format": "h5"})
    assert r.status_code == 200, r.text
    with h5py.File(io.BytesIO(r.content)) as hf:
        return hf["reconstruction"][()]


def test_killed_service_loses_no_job(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "last.pt")
    short = tiny_scans(tmp_path / "short", slices=1, shape=(16, 12))[0]
    long = tiny_scans(tmp_path / "long", slices=6, shape=(16, 12))[0]
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    models, data = {"demo": ckpt}, tmp_path / "serve"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    slow = ["--token-file", str(token), "--job-delay", "0.4"]
    with running_service(models, data, slow) as (url, proc):
        client = httpx.Client(base_url=url, headers=auth, timeout=30)
        first = _submit(client, short)
        _wait(client, first, lambda j: j["state"] == "done")
        second = _submit(client, long)
        job = _wait(client, second, lambda j: j["state"] == "running" and j["progress"]["done"])
        assert job["progress"]["total"] == 6
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        client.close()
    with running_service(models, data, ["--token-file", str(token)]) as (url, _):
        client = httpx.Client(base_url=url, headers=auth, timeout=30)
        done = _wait(client, second, lambda j: j["state"] in ("done", "failed"))
        assert done["state"] == "done", done["error"]
        assert done["progress"] == {"done": 6, "total": 6}
        results = {first: _recon(client, first), second: _recon(client, second)}
        client.close()
    for job_id, path in ((first, short), (second, long)):
        reconstruct_file(ckpt, path, tmp_path / "ref", ("h5",), device="cpu")
        with h5py.File(tmp_path / "ref" / f"{path.stem}.h5") as hf:
            np.testing.assert_allclose(results[job_id], hf["reconstruction"][()], rtol=1e-6)

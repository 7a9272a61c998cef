"""The Java client's jar against a real ``gleam serve``: its results are ``gleam recon``'s.

Needs ``java`` and ``java/gleam-client/target/gleam-client.jar`` (``bash java/build.sh``,
which ``make test`` runs first); skipped without them. One service (tiny checkpoint, token) is
shared by the tests of this file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from gleam_mri.cli import main as gleam
from test_serve_support import running_service, tiny_checkpoint, tiny_scans

ROOT = Path(__file__).resolve().parents[1]
JAR = ROOT / "java" / "gleam-client" / "target" / "gleam-client.jar"
JAVA = shutil.which("java")

pytestmark = pytest.mark.skipif(
    JAVA is None or not JAR.is_file(),
    reason="needs java and java/gleam-client/target/gleam-client.jar (bash java/build.sh)",
)

MODEL = "tiny"
TOKEN = "e2e-secret-token"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """``(url, token_file, checkpoint, scan)`` of a running ``gleam serve --token-file``."""
    tmp = tmp_path_factory.mktemp("java_e2e")
    ckpt = tiny_checkpoint(tmp / "ckpt.pt")
    scan = tiny_scans(tmp / "scans", n=1, slices=2, shape=(32, 24))[0]
    token_file = tmp / "token.txt"
    token_file.write_text(TOKEN + "\n")
    extra = ["--token-file", str(token_file)]
    with running_service({MODEL: ckpt}, tmp / "serve", extra) as (url, _):
        yield url, token_file, ckpt, scan


def jar(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``java -jar gleam-client.jar ARGS``, its output captured as text."""
    env = {k: v for k, v in os.environ.items() if k != "GLEAM_SERVER"}
    return subprocess.run(
        [JAVA, "-jar", str(JAR), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def service_json(url: str, path: str, token: str | None) -> tuple[int, dict]:
    """``GET url+path`` straight from the service: its status and JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_reconstruct_equals_gleam_recon(service, tmp_path):
    url, token_file, ckpt, scan = service
    out = tmp_path / "out"
    done = jar(
        "reconstruct", scan, "--server", url, "-o", out, "--model", MODEL,
        "--formats", "h5,nii", "--token-file", token_file,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    h5, nii = out / f"{scan.stem}.h5", out / f"{scan.stem}.nii.gz"
    assert done.stdout.split() == [str(h5), str(nii)]
    # the progress line (stderr) ends with the job done and every slice counted
    assert re.search(r"done 2/2 slices", done.stderr), done.stderr

    ref = tmp_path / "ref"
    # gleam recon's own entry point, in this process (saves a second torch start-up)
    argv = ["recon", str(ckpt), str(scan), "-o", str(ref), "--formats", "h5,nii", "--device", "cpu"]
    assert gleam(argv) == 0

    with h5py.File(h5, "r") as got, h5py.File(ref / h5.name, "r") as want:
        image, expected = got["reconstruction"][()], want["reconstruction"][()]
    assert image.dtype == np.float32
    assert image.shape == expected.shape == (2, 32, 24)
    assert np.abs(expected).max() > 0
    # same code, same float32 arithmetic in another process: float32 rounding at most
    atol = 1e-6 * float(np.abs(expected).max())
    np.testing.assert_allclose(image, expected, rtol=1e-5, atol=atol)

    got_nii, want_nii = nib.load(nii), nib.load(ref / nii.name)
    assert got_nii.shape == want_nii.shape
    np.testing.assert_allclose(got_nii.affine, want_nii.affine)
    want_data = np.asarray(want_nii.dataobj)
    atol = 1e-6 * float(np.abs(want_data).max())
    np.testing.assert_allclose(np.asarray(got_nii.dataobj), want_data, rtol=1e-5, atol=atol)


def test_bad_upload_fails_with_the_service_message(service, tmp_path):
    url, token_file, _, _ = service
    notes = tmp_path / "notes.txt"
    notes.write_text("not k-space\n")
    done = jar("reconstruct", notes, "--server", url, "-o", tmp_path / "out",
               "--token-file", token_file)  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)  # 1: the job failed
    assert done.stdout == ""
    assert not (tmp_path / "out" / "notes.h5").exists()
    # the job's error, as the service reports it, is what the jar printed
    job_id = re.search(r"job ([0-9a-f]{32})", done.stderr)
    assert job_id, done.stderr
    status, job = service_json(url, f"/v1/reconstructions/{job_id[1]}", TOKEN)
    assert status == 200 and job["state"] == "failed"
    assert job["error"] and job["error"] in done.stderr
    assert "notes.txt" in job["error"]


def test_missing_token_is_refused_with_the_service_message(service, tmp_path):
    url, _, _, scan = service
    done = jar("reconstruct", scan, "--server", url, "-o", tmp_path / "out")
    assert done.returncode == 4, (done.stdout, done.stderr)  # 4: the service refused it
    status, body = service_json(url, "/v1/models", None)
    assert status == 401
    assert body["detail"] in done.stderr
    assert "--token-file" in done.stderr  # the hint
    assert not (tmp_path / "out").exists()

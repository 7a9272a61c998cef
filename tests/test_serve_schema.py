"""Property-based test of gleam serve's OpenAPI schema (schemathesis): requests generated from
/openapi.json for every operation, with the token, never get a 5xx.

Hypothesis drives schemathesis's strategies directly (schemathesis's pytest plugin does not run
on the pytest here).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from gleam_mri.serve.app import create_app
from gleam_mri.serve.settings import ServeSettings
from test_serve_support import tiny_checkpoint

TOKEN = "schema-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_generated_requests_get_no_server_error(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "last.pt")
    app = create_app(ServeSettings({"demo": ckpt}, tmp_path / "serve", device="cpu", token=TOKEN))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /v1/reconstructions",
        "GET /v1/reconstructions/{job_id}/result",
        "DELETE /v1/reconstructions/{job_id}",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

        check()
    app.state.store.close()

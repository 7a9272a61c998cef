"""The bounded fuzz run (issue 14): every fuzz target of ``fuzz/targets.py`` runs a fixed number
of inputs (its seed corpus, then mutations) and none may fail: no exception other than the
documented error types, no hang (``--timeout``), no memory above ``--rss-limit-mb``.

Long campaigns are run by hand (``fuzz/README.md``); this is their smoke test. Skipped where
atheris is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("atheris")

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
RUNS = 100  # inputs per target: about 20 s for all targets on 2 cores
SEED = 14  # libFuzzer's seed: the suite tries the same inputs every time (campaigns explore)


def _runner():
    spec = importlib.util.spec_from_file_location("gleam_fuzz_run", FUZZ / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_target_runs_its_inputs_without_failure(tmp_path):
    runner = _runner()
    names = runner.targets()
    assert len(names) == 11 and {"fastmri", "twix", "cfl", "checkpoint"} <= set(names)
    results = runner.run(
        names,
        runs=RUNS,
        seconds=None,
        timeout=10,
        rss_limit_mb=2048,
        keep=False,
        shared_seeds=False,
        artifacts=tmp_path / "artifacts",
        quiet=True,
        seed=SEED,
    )
    assert [r["target"] for r in results] == names
    failed = {
        r["target"]: (r["failure"], r.get("log_tail", "")[-2000:]) for r in results if r["failure"]
    }
    assert not failed, failed
    ran = {r["target"]: r["inputs"] for r in results}
    assert all(n >= RUNS for n in ran.values()), ran
    assert not list((tmp_path / "artifacts").iterdir())  # no failing input saved

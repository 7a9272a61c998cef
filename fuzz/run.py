"""Run the fuzz targets (``fuzz/targets.py``) and report inputs tried and failures per target.

Examples::

    python fuzz/run.py all --runs 300                 # the bounded run of the test suite
    python fuzz/run.py twix cfl --time 120 --keep     # long runs; new corpus files kept
    python fuzz/run.py all --time 60 --shared-seeds   # plus the real files in ../shared/data

All targets run in one child process (the heavy imports are paid once) that forks one libFuzzer
run per target, one after another. Each run uses the target's seed corpus ``fuzz/corpus/TARGET``
(read-only unless ``--keep``), stops after ``--runs`` inputs or ``--time`` seconds, and ends at
its first failure: an exception other than the documented error types, an input running longer
than ``--timeout`` seconds (a hang) or a process above ``--rss-limit-mb`` (memory). The failing
input is saved as ``ARTIFACTS/TARGET-crash-*`` (``-timeout-*``, ``-oom-*``); replay it with
``python fuzz/targets.py TARGET FILE``. Exit status 1 when any target failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "data"
# extra seeds for long runs, from the real fixtures beside the project (never copied in)
SHARED_SEEDS = {
    "twix": ["twix"],
    "convert": ["twix"],
    "fastmri": ["real_fullysampled"],
}


def targets() -> list[str]:
    text = (ROOT / "targets.py").read_text()
    block = text[text.index("TARGETS: dict") :]
    return re.findall(r'^\s+"(\w+)": \w+,$', block[: block.index("}")], flags=re.M)


def _parse(log: str, rc: int, target: str, artifacts: Path) -> dict:
    runs = re.findall(r"stat::number_of_executed_units: (\d+)", log)
    done = re.findall(r"Done (\d+) runs", log)
    progress = re.findall(r"^#(\d+)\s", log, flags=re.M)  # a run that failed prints no stats
    inputs = (
        int(runs[-1]) if runs else int(done[-1]) if done else int(progress[-1]) if progress else 0
    )
    failure = None
    if rc != 0:
        kind = "crash"
        if "ALARM: working on the last Unit" in log or "ERROR: libFuzzer: timeout" in log:
            kind = "timeout"
        if "out-of-memory" in log:
            kind = "out of memory"
        exc = re.findall(r"^(\w[\w.]*(?:Error|Exception|Exit)\b.*)$", log, flags=re.M)
        saved = sorted(str(p) for p in artifacts.glob(f"{target}-*"))
        failure = {"kind": kind, "exception": exc[-1] if exc else None, "inputs": saved}
    return {"target": target, "inputs": inputs, "rc": rc, "failure": failure}


def run(
    names: list[str],
    runs: int | None,
    seconds: float | None,
    timeout: int,
    rss_limit_mb: int,
    keep: bool,
    shared_seeds: bool,
    artifacts: Path,
    quiet: bool = False,
    seed: int | None = None,
) -> list[dict]:
    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gleam-fuzz-run-") as tmp:
        work = Path(tmp)
        jobs = []
        for name in names:
            seeds = ROOT / "corpus" / name
            seeds.mkdir(parents=True, exist_ok=True)
            fresh = work / f"corpus-{name}"
            fresh.mkdir()
            dirs = [str(seeds), str(fresh)] if keep else [str(fresh), str(seeds)]
            if shared_seeds:
                dirs += [
                    str(SHARED / d) for d in SHARED_SEEDS.get(name, []) if (SHARED / d).is_dir()
                ]
            args = [
                f"-timeout={timeout}",
                f"-rss_limit_mb={rss_limit_mb}",
                f"-artifact_prefix={artifacts}/{name}-",
                "-print_final_stats=1",
                f"-max_len={2**21 if shared_seeds else 65536}",
                "-len_control=0" if shared_seeds else "-len_control=100",
            ]
            if runs is not None:
                args.append(f"-runs={runs}")
            if seed is not None:  # libFuzzer's random seed: the same mutations on every run
                args.append(f"-seed={seed}")
            if seconds is not None:
                args.append(f"-max_total_time={int(seconds)}")
            jobs.append({"target": name, "args": args + dirs, "log": str(work / f"{name}.log")})
        spec = work / "jobs.json"
        spec.write_text(json.dumps(jobs))
        env = dict(os.environ, OMP_NUM_THREADS="1", GLEAM_FUZZ_SCRATCH=str(work / "scratch"))
        env["GLEAM_FUZZ_ARTIFACTS"] = str(artifacts)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT.parent / "src"), env.get("PYTHONPATH")) if p
        )
        start = time.monotonic()
        cmd = [sys.executable, str(ROOT / "targets.py"), "--batch", str(spec)]
        subprocess.run(cmd, env=env, check=False)
        results = []
        for job in jobs:
            log = Path(job["log"])
            text = log.read_text(errors="replace") if log.exists() else ""
            rc_file = Path(job["log"] + ".rc")
            rc = int(rc_file.read_text()) if rc_file.exists() else -1
            result = _parse(text, rc, job["target"], artifacts)
            if result["failure"] is not None:
                result["log_tail"] = text[-4000:]
            results.append(result)
        elapsed = time.monotonic() - start
    if not quiet:
        for r in results:
            status = "ok" if r["failure"] is None else f"FAILED ({r['failure']['kind']})"
            print(f"{r['target']:16s} {r['inputs']:8d} inputs  {status}")
            if r["failure"] is not None:
                print(r["log_tail"])
                print("  failing input:", ", ".join(r["failure"]["inputs"]) or "(none saved)")
        total = sum(r["inputs"] for r in results)
        print(f"{len(results)} targets, {total} inputs in {elapsed:.0f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", help=f"'all' or some of {targets()}")
    parser.add_argument("--runs", type=int, help="inputs per target (default: no limit)")
    parser.add_argument("--time", type=float, help="seconds per target (default: no limit)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds per input (a hang)")
    parser.add_argument("--rss-limit-mb", type=int, default=2048, help="memory bound (MB)")
    parser.add_argument("--keep", action="store_true", help="add new inputs to fuzz/corpus")
    parser.add_argument("--shared-seeds", action="store_true", help="also seed from ../shared")
    parser.add_argument("--seed", type=int, help="libFuzzer's random seed (default: random)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    names = targets() if args.targets == ["all"] else args.targets
    unknown = sorted(set(names) - set(targets()))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {targets()}")
    if args.runs is None and args.time is None:
        parser.error("give --runs or --time (or both)")
    results = run(
        names, args.runs, args.time, args.timeout, args.rss_limit_mb, args.keep,
        args.shared_seeds, args.artifacts.resolve(), seed=args.seed,
    )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["failure"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

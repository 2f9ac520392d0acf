"""A refusal is a skip only when it is a refusal of that dtype: a subject that refuses valid input
for every dtype fails the audit and the matrix, with the reason in its rows.

Each test runs the harness in a subprocess, as a user would, on a planted subject from
tests/_planted_refusals.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``python -m ...`` from the repo root with reports under ``tmp_path``; the report's rows."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("HYPOTHESIS_PROFILE", None)
    done = subprocess.run(
        [
            sys.executable,
            *args,
            f"--rootdir={tmp_path}",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = sorted((tmp_path / "reports").glob("*.json"))
    rows = json.loads(reports[0].read_text()) if reports else []
    return done, rows


def _statuses(rows: list[dict]) -> dict[str, int]:
    return {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "skip")}


def test_a_subject_that_raises_on_every_step_fails_the_audit(tmp_path):
    done, rows = _run(
        tmp_path,
        "-m",
        "conformance",
        "audit",
        "tests._planted_refusals:RaisesOnEveryStepAdam",
        "--like=Adam",
        "--kwargs",
        "fused=True",
        "--contract=ulp",
        "--dtypes",
        "float32",
        "--profile=dev",
        "--shrink-seconds=1",
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode != 0, f"the audit passed a subject that cannot step:\n{output}"
    counts = _statuses(rows)
    assert counts["fail"] > 0, f"no failing row, only {counts}:\n{output}"
    refused = [r for r in rows if r["status"] == "skip" and "refuses float32" in r["reason"]]
    assert not refused, f"a step that always raises passed as a dtype refusal: {refused[0]}"


# CI's matrix runs impl's own classes: plant the bug there, as a broken impl.Adafactor would be
_WITH_BROKEN_IMPL_ADAFACTOR = (
    "import sys, impl, pytest\n"
    "from tests._planted_refusals import RefusesZeroWeightDecayAdafactor\n"
    "impl.Adafactor = RefusesZeroWeightDecayAdafactor\n"
    "sys.exit(pytest.main(sys.argv[1:]))\n"
)


def test_an_impl_class_that_refuses_a_valid_default_fails_the_matrix(tmp_path):
    done, rows = _run(
        tmp_path,
        "-c",
        _WITH_BROKEN_IMPL_ADAFACTOR,
        "conformance",
        "--conformance-like=Adafactor",
        "--conformance-dtypes=float32",
        "--hypothesis-profile=dev",
        "--conformance-shrink-seconds=1",
        "-q",
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 1, (
        f"the matrix did not fail its tests (exit {done.returncode}):\n{output}"
    )
    assert {r["subject"] for r in rows} == {
        "tests._planted_refusals.RefusesZeroWeightDecayAdafactor"
    }
    assert _statuses(rows)["fail"] > 0, f"no failing row:\n{output}"
    refused = [r for r in rows if r["status"] == "skip" and "refuses float32" in r["reason"]]
    assert not refused, f"a refused valid weight_decay passed as a dtype refusal: {refused[0]}"


def test_a_lack_the_suite_declares_is_a_skip_that_passes(tmp_path):
    done, rows = _run(
        tmp_path,
        "-m",
        "pytest",
        "conformance",
        "--conformance-suite=impl-fused",
        "--conformance-like=Adagrad",
        "--conformance-dtypes=complex64",
        "--hypothesis-profile=dev",
        "-k",
        "test_matches_torch",
        "-q",
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, (
        f"a declared lack failed the run (exit {done.returncode}):\n{output}"
    )
    (row,) = rows
    assert (row["status"], row["dtype"]) == ("skip", "complex64"), row
    assert row["reason"].startswith("declared by the suite:"), row["reason"]

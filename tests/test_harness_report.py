"""Report rows merge across workers and devices."""

import json

from conformance import report


def _row(device, status="pass", examples=3, ulp=0.0, check="torch"):
    return {
        "subject": "impl.Adam",
        "optimizer": "Adam",
        "contract": "bitwise",
        "check": check,
        "dtype": "float32",
        "device": device,
        "examples": examples,
        "max_ulp": ulp,
        "status": status,
        "reason": "",
    }


def test_worker_rows_add_up_and_failures_win():
    merged = {}
    report.merge(merged, [_row("cpu", examples=3, ulp=1.0)])
    report.merge(merged, [_row("cpu", examples=4, ulp=2.0, status="fail")])
    (r,) = merged.values()
    assert (r["examples"], r["max_ulp"], r["status"]) == (7, 2.0, "fail")


def test_a_cuda_run_keeps_the_cpu_rows(tmp_path):
    cpu = {}
    report.merge(cpu, [_row("cpu")])
    report.write(tmp_path, cpu)
    cuda = {}
    report.merge(cuda, [_row("cuda", status="skip", examples=0, ulp=None)])
    table = report.write(tmp_path, cuda)
    assert {(r["device"], r["status"]) for r in table} == {("cpu", "pass"), ("cuda", "skip")}
    assert json.loads((tmp_path / "conformance.json").read_text()) == table
    md = (tmp_path / "conformance.md").read_text()
    assert "| impl.Adam | Adam | torch | bitwise | float32 | cuda | 0 | – | ULP | skip |" in md


def test_a_rerun_on_the_same_device_replaces_its_rows(tmp_path):
    for examples in (3, 5):
        rows = {}
        report.merge(rows, [_row("cpu", examples=examples)])
        table = report.write(tmp_path, rows, "audit")
    assert [r["examples"] for r in table] == [5]
    assert json.loads((tmp_path / "audit.json").read_text()) == table


def test_an_infinite_distance_is_written_as_inf(tmp_path):
    rows = {}
    report.merge(rows, [_row("cpu", ulp=float("inf"), status="fail")])
    report.write(tmp_path, rows)
    assert "| inf | ULP | fail |" in (tmp_path / "conformance.md").read_text()

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


def _matrix() -> list[dict]:
    """Every registry entry x every check kind x 4 dtypes, passing: the size of a full run."""
    from conformance.checks import KINDS
    from conformance.registry import REGISTRY

    rows = []
    for entry in REGISTRY:
        for kind in KINDS:
            for dtype in ("float16", "bfloat16", "float32", "float64"):
                r = _row("cpu", check=kind.name, ulp=1.0)
                rows.append({**r, "optimizer": entry.name, "subject": f"impl.{entry.name}"})
                rows[-1]["dtype"] = dtype
    return rows


def test_the_summary_of_a_passing_full_matrix_fits_on_a_screen():
    rows = _matrix()
    text = report.summary(rows, ["reports/conformance.md"])
    lines = text.splitlines()
    assert len(lines) <= 60, f"{len(lines)} lines:\n{text}"
    assert max(map(len, lines)) <= 120, f"a line of {max(map(len, lines))} characters:\n{text}"
    grid = [line for line in lines if line.split(" ", 1)[0] in {r["optimizer"] for r in rows}]
    assert len(grid) == len({r["optimizer"] for r in rows}), (
        f"not one grid line per optimizer:\n{text}"
    )
    assert "reports/conformance.md" in text


def test_the_summary_names_every_failing_row_and_the_worst_measure():
    rows = _matrix()
    rows[7] = {**rows[7], "status": "fail", "reason": "spec: the planted reason", "max_ulp": 99.0}
    text = report.summary(rows, [])
    assert "1 fail" in text.splitlines()[0], text.splitlines()[0]
    assert "spec: the planted reason" in text, text
    failed = rows[7]
    assert f"99 {report.measure(failed['check'])} ({failed['optimizer']} {failed['dtype']})" in text
    assert "x1" in text, "the failing cell is not marked"

"""Report rows merge across workers and devices, and carry the margin the judge saw: the
measure, its allowance and their ratio where the ratio is largest."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conformance import report
from conformance.core import judge

ROOT = Path(__file__).resolve().parents[1]
U32 = 2.0**-23  # float32's spacing in [1, 2)


def _margin(measure, allowance, absolute=0.0, source="derived"):
    return judge.Margin(measure, allowance, source, absolute).as_dict()


def _row(device, status="pass", examples=3, ulp=0.0, check="torch", margin=None):
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
        "margin": margin,
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
    assert (
        "| impl.Adam | Adam | torch | bitwise | float32 | cuda | 0 | – | ULP | – | – | skip |" in md
    )


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
    assert "| inf | ULP | – | – | fail |" in (tmp_path / "conformance.md").read_text()


def _matrix() -> list[dict]:
    """Every registry entry x every check kind x 4 dtypes, passing: the size of a full run."""
    from conformance.checks import KINDS
    from conformance.registry import REGISTRY

    rows = []
    for entry in REGISTRY:
        for kind in KINDS:
            for dtype in ("float16", "bfloat16", "float32", "float64"):
                r = _row("cpu", check=kind.name, ulp=1.0, margin=_margin(1.0, 4.0))
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
    failed = rows[7] = {
        **rows[7],
        "status": "fail",
        "reason": "spec: the planted reason",
        "max_ulp": 99.0,
        "margin": _margin(99.0, 8.0),
    }
    text = report.summary(rows, [])
    assert "1 fail" in text.splitlines()[0], text.splitlines()[0]
    assert "spec: the planted reason" in text, text
    line = f"99 of 8 = 12 {report.measure(failed['check'])}, derived ({failed['optimizer']} "
    assert line + f"{failed['dtype']}; max 99)" in text, text
    assert "x1" in text, "the failing cell is not marked"


# -- the margin: what the judge saw, where the ratio is largest ------------------------------


class _Planted(judge.Context):
    """A judging context of no real check: no subject or case, a failure says only what."""

    def fail(self, what: str, detail: str) -> None:
        raise judge.ConformanceError(f"{what}: {detail}")


def _context():
    return _Planted("planted", None, None, "the planted exact values")


@pytest.fixture(autouse=True)
def _fresh_margins():
    """Each test starts the recorder as the plugin does for a test item, and leaves no
    context behind (``explained`` would pop it in a real check)."""
    depth = len(judge._CONTEXTS)
    judge.MARGINS.start()
    yield
    del judge._CONTEXTS[depth:]


def test_the_margin_is_the_element_where_the_ratio_is_largest():
    # errors 3, 1, 0, 0 ULPs against 6, 1.5, 0, 2: ratios 0.5, 0.67, 0 of 0, 0
    exact = np.ones(4)
    actual = exact + np.array([3, 1, 0, 0]) * U32
    ctx = _context()
    raw = judge.assert_scaled(
        ctx, "planted", actual, exact, exact, torch.float32, np.array([6, 1.5, 0, 2]), source="mine"
    )
    assert raw == 3.0, "the check's own number (the raw maximum) changed"
    m = ctx.margin
    assert (m.measure, m.allowance, m.source, m.what) == (1.0, 1.5, "mine", "planted"), m
    assert m.ratio == pytest.approx(2 / 3), m
    assert judge.MARGINS.take() == m, "the report's recorder saw another margin than the context"


def test_the_margin_keeps_the_worst_ratio_over_a_checks_judgments():
    ctx = _context()
    big, tight = np.array([1.0 + 1000 * U32]), np.array([1.0 + 2 * U32])
    judge.assert_scaled(ctx, "huge raw", big, np.ones(1), np.ones(1), torch.float32, 10_000)
    judge.assert_scaled(ctx, "tight", tight, np.ones(1), np.ones(1), torch.float32, 2.5)
    judge.assert_scaled(ctx, "loose", tight, np.ones(1), np.ones(1), torch.float32, 100)
    m = judge.MARGINS.take()
    assert (m.what, m.measure, m.allowance) == ("tight", 2.0, 2.5), m
    assert ctx.margin == m


def test_an_allowance_of_mostly_absolute_terms_is_flagged():
    ctx = _context()
    one, two_off = np.ones(1), np.array([1.0 + 2 * U32])
    # bound 1 ULP + 3 ULPs of absolute terms: 2 of 4, three quarters absolute
    judge.assert_scaled(ctx, "p", two_off, one, one, torch.float32, 1.0, absolute=3 * U32)
    m = judge.MARGINS.take()
    assert (m.measure, m.allowance, m.absolute) == (2.0, 4.0, 3.0), m
    assert m.mostly_absolute and m.as_dict()["mostly_absolute"], m
    assert "2 of 4 = 0.5, mostly absolute terms" == report.fmt_margin(m.as_dict())
    # 1 ULP + 1 ULP: half absolute is not mostly
    judge.assert_scaled(ctx, "p", two_off, one, one, torch.float32, 1.0, absolute=U32)
    m = judge.MARGINS.take()
    assert (m.allowance, m.ratio, m.mostly_absolute) == (2.0, 1.0, False), m


def test_a_bitwise_judgment_is_0_of_0_and_a_distance_against_0_is_infinite():
    ctx = _context()
    x = torch.tensor([1.0, 2.0])
    judge.assert_ulp(ctx, "same", x, x.clone(), 0)
    m = judge.MARGINS.take()
    assert (m.measure, m.allowance, m.ratio, m.source) == (0.0, 0.0, 0.0, "bitwise"), m
    assert report.fmt_margin(m.as_dict()) == "0 of 0"
    with pytest.raises(judge.ConformanceError):
        judge.assert_ulp(ctx, "moved", x, torch.nextafter(x, x + 1), 0)
    m = judge.MARGINS.take()
    assert (m.measure, m.ratio) == (1.0, math.inf), "a failing judgment is not in the margin"


def test_assert_within_records_its_absolute_allowance():
    ctx = _context()
    judge.assert_within(ctx, "d", np.array([1.0, 5.0]), np.array([1.5, 5.0]), [2.0, 0.0], 1.0)
    m = judge.MARGINS.take()
    assert (m.measure, m.allowance, m.ratio, m.source) == (0.5, 2.0, 0.25, "absolute allowance")


def _target():
    subject = SimpleNamespace(label="impl.Adam", contract="ulp")
    return SimpleNamespace(
        subject=subject, entry=SimpleNamespace(name="Adam"), dtype="float32", device="cpu"
    )


def test_a_row_carries_the_margin_its_test_item_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "ROWS", {})
    ctx = _context()
    actual = np.array([1.0 + 3 * U32, 1.0 + U32])
    judge.assert_scaled(ctx, "param 0", actual, np.ones(2), np.ones(2), torch.float32, [6, 1.5])
    report.margin(_target(), "spec", judge.MARGINS.take())
    report.example(_target(), "spec", 3.0)
    report.outcome(_target(), "spec", "pass")
    (row,) = report.write(tmp_path, report.ROWS)
    assert row["max_ulp"] == 3.0
    assert {k: row["margin"][k] for k in ("measure", "allowance", "source", "at")} == {
        "measure": 1.0,
        "allowance": 1.5,
        "source": "derived",
        "at": "param 0",
    }, row["margin"]
    assert json.loads((tmp_path / "conformance.json").read_text())[0]["margin"] == row["margin"]
    md = (tmp_path / "conformance.md").read_text()
    assert "| 3 | ULP | 1 of 1.5 = 0.67 | derived | pass |" in md, md


def test_merged_rows_keep_the_worst_ratio_not_the_largest_raw_measure():
    merged = {}
    vacuous = _row("cpu", ulp=1e10, margin=_margin(1e10, 1e12, absolute=9e11))
    tight = _row("cpu", ulp=3.0, margin=_margin(3.0, 3.5))
    report.merge(merged, [vacuous])
    report.merge(merged, [tight])
    (r,) = merged.values()
    assert (r["max_ulp"], r["margin"]["measure"], r["margin"]["allowance"]) == (1e10, 3.0, 3.5)
    report.merge(merged, [vacuous])  # in either order
    assert r["margin"]["allowance"] == 3.5


def test_the_worst_per_kind_is_chosen_by_ratio():
    rows = [
        {**_row("cpu", ulp=1.1e10, check="spec", margin=_margin(1e10, 2e11)), "optimizer": "A"},
        {**_row("cpu", ulp=2.0, check="spec", margin=_margin(2.0, 2.5)), "optimizer": "B"},
        {**_row("cpu", ulp=9.0, check="spec", margin=None), "optimizer": "C"},
    ]
    assert report.worst_by_ratio(rows)["optimizer"] == "B"
    text = report.summary(rows, [])
    assert "  spec: 2 of 2.5 = 0.8 ULP, derived (B float32; max 2)" in text, text


# CI's matrix, in a subprocess as a user runs it, with the judge's inputs recorded beside it:
# the row must carry the largest ratio computed here from what assert_scaled was given.
_SPY = """
import json, sys
import numpy as np, pytest, torch
from conformance.core.ulp import scaled_ulp_error, spacing
from conformance.kinds import spec_step
seen, judge_scaled = [], spec_step.assert_scaled
def spy(ctx, what, actual, exact, ref, dtype, bound, absolute=0.0, **kw):
    a, e = np.asarray(actual, np.float64), np.asarray(exact, np.float64)
    r = np.broadcast_to(np.asarray(ref, np.float64), e.shape)
    err = scaled_ulp_error(*(torch.from_numpy(np.array(x)) for x in (a, e, r)), dtype).numpy()
    scale = torch.from_numpy(np.array(np.maximum(np.abs(e), np.abs(r))))
    allowed = bound + np.asarray(absolute, np.float64) / spacing(scale, dtype).numpy()
    allowed = np.broadcast_to(allowed, e.shape)
    seen.extend(zip(err.ravel().tolist(), allowed.ravel().tolist()))
    return judge_scaled(ctx, what, actual, exact, ref, dtype, bound, absolute, **kw)
spec_step.assert_scaled = spy
code = pytest.main(sys.argv[2:])
json.dump(seen, open(sys.argv[1], "w"))
sys.exit(code)
"""


def test_the_matrix_row_carries_the_ratio_the_judge_saw(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true"}
    env.pop("HYPOTHESIS_PROFILE", None)
    done = subprocess.run(
        [
            *(sys.executable, "-c", _SPY, str(tmp_path / "seen.json"), "conformance"),
            *("-p", "no:cacheprovider", "-p", "no:xdist", f"--rootdir={tmp_path}"),
            *("--conformance-like=RAdam", "--conformance-dtypes=float32"),
            *("-k", "test_matches_spec", "--hypothesis-profile=dev", "-q"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = json.loads((tmp_path / "reports" / "conformance.json").read_text())
    assert row["margin"] is not None, f"the plugin left the row without a margin: {row}"
    seen = [tuple(pair) for pair in json.loads((tmp_path / "seen.json").read_text())]
    ratios = [0.0 if e == 0 else e / a for e, a in seen]
    assert len(seen) > 10 and max(ratios) > 0, "the planted run judged nothing"
    assert row["margin"]["ratio"] == pytest.approx(max(ratios), rel=1e-12), row["margin"]
    pair = (row["margin"]["measure"], pytest.approx(row["margin"]["allowance"], rel=1e-12))
    assert pair in seen, f"the row's margin {row['margin']} is no (error, allowance) judged"


def test_the_docs_measured_blocks_are_rewritten_between_their_markers(tmp_path):
    rows = [
        {**_row("cpu", ulp=7.0, check="spec", margin=_margin(3.0, 4.0)), "dtype": "float64"},
        {**_row("cpu", ulp=0.0, check="torch", margin=_margin(0.0, 0.0))},
    ]
    doc = tmp_path / "verified.md"
    doc.write_text(
        "before\n<!-- measured:spec:begin -->\nstale 1/2/1/1\n<!-- measured:spec:end -->\nafter\n"
    )
    blocks = report.measured_blocks(rows, "2026-12-07", "the command")
    assert report.rewrite_measured(doc, blocks) == ["spec"]
    text = doc.read_text()
    assert text.startswith("before\n<!-- measured:spec:begin -->\nMeasured 2026-12-07 with `the")
    assert text.endswith("<!-- measured:spec:end -->\nafter\n") and "stale" not in text, text
    assert "| Adam | 7 (0.75) | – |" in text, text
    assert "vs torch: at most 0 ULP over 1 rows." in text, text
    report.rewrite_measured(doc, blocks)
    assert doc.read_text() == text, "a second rewrite changed the block"
    doc.write_text("<!-- measured:spce:begin -->\n<!-- measured:spce:end -->\n")
    with pytest.raises(ValueError, match="unknown measured block 'spce'"):
        report.rewrite_measured(doc, blocks)

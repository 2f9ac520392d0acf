"""The matrix in N slices (conformance.slices, ``--splits N --group K``) and their merge
(``python -m conformance report``): the slices partition the items, balance them, and merge to
the rows one unsliced run writes; slices of different runs, or an incomplete set, are refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import report, slices
from conformance.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


# --- balancing -----------------------------------------------------------------------------


def _loads(parts, durations):
    return [sum(durations[n] for n in part) for part in parts]


durations_st = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=6),
    st.floats(0.001, 100, allow_nan=False),
    min_size=1,
    max_size=40,
)


@given(durations_st, st.integers(1, 6), st.randoms(use_true_random=False))
def test_slices_partition_the_items_whatever_the_collection_order(durations, splits, rnd):
    nodeids = list(durations)
    parts = slices.assign(nodeids, durations, splits)
    assert len(parts) == splits
    assert sorted(n for part in parts for n in part) == sorted(nodeids)  # none twice or missing
    for part in parts:  # each slice keeps the collection order
        assert part == [n for n in nodeids if n in part]
    shuffled = nodeids[:]
    rnd.shuffle(shuffled)
    again = slices.assign(shuffled, durations, splits)
    assert [set(p) for p in again] == [set(p) for p in parts]  # another order, same slices


@given(durations_st, st.integers(1, 6))
def test_no_slice_is_more_than_the_longest_item_above_another(durations, splits):
    loads = _loads(slices.assign(list(durations), durations, splits), durations)
    assert max(loads) - min(loads) <= max(durations.values()) + 1e-9


def test_longest_first_onto_the_least_loaded_slice():
    durations = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 2.0, "f": 1.0}
    # LPT: a->1, b->2, c->2 (4 < 5), d->1, e->2 (7 < 8), f->1 (8 < 9): 9 and 9
    assert slices.assign(list(durations), durations, 2) == [["a", "d", "f"], ["b", "c", "e"]]


def test_ties_are_broken_by_nodeid_and_slice_number():
    durations = dict.fromkeys(["z", "y", "x", "w"], 1.0)
    # dealt in nodeid order w, x, y, z (not the collection order), then listed in collection order
    assert slices.assign(["z", "y", "x", "w"], durations, 2) == [["y", "w"], ["z", "x"]]


def test_items_unknown_to_the_file_weigh_its_mean():
    assert slices.weights(["a", "new"], {"a": 10.0, "b": 2.0}) == {"a": 10.0, "new": 6.0}
    # two unknown items of weight 6 balance 'a' (10) + 'b' (2); counted as 0 (or as 'a'), they
    # would land elsewhere
    parts = slices.assign(["a", "b", "n1", "n2"], {"a": 10.0, "b": 2.0}, 2)
    assert parts == [["a", "b"], ["n1", "n2"]]
    assert slices.weights(["x"], {}) == {"x": 1.0}  # no file: equal shares


def test_select_deselects_the_other_slices():
    items = [SimpleNamespace(nodeid=n) for n in "abcd"]
    kept, dropped = slices.select(items, 2, 2, dict.fromkeys("abcd", 1.0))
    assert [i.nodeid for i in kept] == ["b", "d"]
    assert [i.nodeid for i in dropped] == ["a", "c"]


@pytest.mark.parametrize(
    ("splits", "group", "message"),
    [
        (0, 1, "--splits must be at least 1, got 0"),
        (3, 0, "--group must be between 1 and --splits=3, got 0"),
        (3, 4, "--group must be between 1 and --splits=3, got 4"),
        (None, 2, "--splits N and --group K go together"),
        (2, None, "--splits N and --group K go together"),
    ],
)
def test_a_slice_that_cannot_exist_is_a_usage_error(splits, group, message):
    with pytest.raises(pytest.UsageError, match=re.escape(message)):
        slices.validate(splits, group)


def test_durations_are_summed_over_phases_and_merged_into_the_file(tmp_path):
    path = tmp_path / "durations.json"
    path.write_text(json.dumps({"kept": 7.0, "t": 100.0}))
    recorder = slices.DurationRecorder(path)
    for duration in (0.25, 1.5, 0.125):  # setup, call, teardown
        recorder.pytest_runtest_logreport(SimpleNamespace(nodeid="t", duration=duration))
    recorder.write()
    assert json.loads(path.read_text()) == {"kept": 7.0, "t": 1.875}


def test_the_committed_durations_know_the_default_matrix():
    durations = slices.load_durations()
    assert len(durations) > 100
    assert all(n.startswith("conformance/") and s >= 0 for n, s in durations.items())


# --- merging slice reports -----------------------------------------------------------------


def _row(optimizer, examples=3, max_ulp=1.0, status="pass"):
    return {
        "subject": "impl." + optimizer,
        "optimizer": optimizer,
        "check": "torch",
        "contract": "bitwise",
        "dtype": "float32",
        "device": "cpu",
        "examples": examples,
        "max_ulp": max_ulp,
        "status": status,
        "reason": "",
        "measure": "ULP",
    }


def _write_slice(directory, group, splits=3, rows=(), **meta):
    meta = {
        "commit": "abc123",
        "dirty": False,
        "profile": "ci",
        "name": "conformance",
        "splits": splits,
        "group": group,
        "devices": ["cpu"],
        "collected": splits,
        "items": [f"item{group}"],
        **meta,
    }
    report.write_slice(directory, {tuple(r.values()): r for r in rows}, meta)


def _refusal(tmp_path, capsys) -> str:
    assert main(["report", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err  # one line
    with pytest.raises(report.SliceError):
        report.merge_slices(tmp_path, "conformance")
    assert not (tmp_path / "conformance.json").exists()
    return err


def test_the_slices_of_one_run_merge_into_the_report(tmp_path, capsys):
    _write_slice(tmp_path, 1, rows=[_row("SGD")])
    _write_slice(tmp_path, 2, rows=[_row("Adam", max_ulp=2.0)])
    _write_slice(tmp_path, 3, rows=[_row("AdamW", status="fail")])
    assert main(["report", "--dir", str(tmp_path)]) == 0
    table = json.loads((tmp_path / "conformance.json").read_text())
    assert [(r["optimizer"], r["max_ulp"], r["status"]) for r in table] == [
        ("Adam", 2.0, "pass"),
        ("AdamW", 1.0, "fail"),
        ("SGD", 1.0, "pass"),
    ]
    assert "2 pass, 1 fail, 0 skip" in (tmp_path / "conformance.md").read_text()


def test_slices_of_another_commit_are_refused(tmp_path, capsys):
    _write_slice(tmp_path, 1)
    _write_slice(tmp_path, 2, commit="def456")
    _write_slice(tmp_path, 3)
    assert _refusal(tmp_path, capsys) == (
        "conformance report: conformance.slice-1-of-3.json and conformance.slice-2-of-3.json "
        "differ in commit: 'abc123' vs 'def456'"
    )


def test_slices_of_another_profile_are_refused(tmp_path, capsys):
    _write_slice(tmp_path, 1)
    _write_slice(tmp_path, 2)
    _write_slice(tmp_path, 3, profile="thorough")
    assert _refusal(tmp_path, capsys) == (
        "conformance report: conformance.slice-1-of-3.json and conformance.slice-3-of-3.json "
        "differ in profile: 'ci' vs 'thorough'"
    )


def test_slices_of_another_split_count_are_refused(tmp_path, capsys):
    _write_slice(tmp_path, 1, splits=2)
    _write_slice(tmp_path, 1, splits=3)
    assert "differ in splits: 2 vs 3" in _refusal(tmp_path, capsys)


def test_a_missing_group_is_refused(tmp_path, capsys):
    _write_slice(tmp_path, 1)
    _write_slice(tmp_path, 3)
    assert _refusal(tmp_path, capsys) == (
        "conformance report: missing group(s) 2 of 3: have conformance.slice-1-of-3.json, "
        "conformance.slice-3-of-3.json"
    )


def test_a_duplicate_group_is_refused(tmp_path, capsys):
    _write_slice(tmp_path, 1)
    _write_slice(tmp_path, 2)
    # group 1's report uploaded again under group 3's name
    copy = (tmp_path / "conformance.slice-1-of-3.json").read_text()
    (tmp_path / "conformance.slice-3-of-3.json").write_text(copy)
    assert _refusal(tmp_path, capsys) == (
        "conformance report: conformance.slice-1-of-3.json and conformance.slice-3-of-3.json "
        "are both group 1"
    )


def test_slices_that_assigned_an_item_twice_are_refused(tmp_path, capsys):
    _write_slice(tmp_path, 1, items=["a", "b"])
    _write_slice(tmp_path, 2, items=["b"])
    _write_slice(tmp_path, 3, items=[])
    assert "conformance.slice-1-of-3.json and conformance.slice-2-of-3.json both ran b" in (
        _refusal(tmp_path, capsys)
    )


def test_slices_that_left_items_out_are_refused(tmp_path, capsys):
    for group in (1, 2, 3):
        _write_slice(tmp_path, group, collected=4)  # one item each, 4 collected
    assert _refusal(tmp_path, capsys) == (
        "conformance report: the slices ran 3 items of the 4 each collected "
        "(assigned differently: another durations.json?)"
    )


def test_a_file_that_is_not_a_slice_report_is_refused(tmp_path, capsys):
    _write_slice(tmp_path, 1)
    (tmp_path / "conformance.slice-2-of-3.json").write_text("[]")
    assert _refusal(tmp_path, capsys) == (
        "conformance report: conformance.slice-2-of-3.json is not a slice report "
        "({'meta': ..., 'rows': [...]})"
    )


def test_no_slices_at_all_is_refused(tmp_path, capsys):
    assert "no slice files" in _refusal(tmp_path, capsys)


# --- the real matrix: 3 slices merged == one run ----------------------------------------------

# a tiny matrix (4 items): cheap, and enough for 3 non-empty slices
TINY = [
    "--conformance-like=SGD,Adam",
    "--conformance-dtypes=float32",
    "-k",
    "test_matches_torch or test_deterministic",
    "--device=cpu",
    "--hypothesis-profile=ci",  # derandomized: every run draws the same examples
]
# reports under the test's own rootdir (no ini: pyproject's would move rootdir back to the repo)
PYTEST = [
    sys.executable,
    "-m",
    "pytest",
    "conformance",
    "-c",
    "/dev/null",
    "-p",
    "no:cacheprovider",
]
PYTEST += ["-v"]  # one "nodeid STATUS" line per item: what each slice really ran
_STATUS = "(?:PASSED|SKIPPED|FAILED|ERROR)"
# "nodeid PASSED" in one process, "[gw0] [ 50%] PASSED nodeid" under xdist
RAN = re.compile(rf"^(?:(\S+::\S+) {_STATUS}|\[gw\d+\] \[\s*\d+%\] {_STATUS} (\S+::\S+))", re.M)


def _pytest(rootdir: Path, *args: str) -> list[str]:
    """Run the matrix in a subprocess with reports under ``rootdir``; the nodeids it ran."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("HYPOTHESIS_PROFILE", None)
    done = subprocess.run(
        [*PYTEST, f"--rootdir={rootdir}", *TINY, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [_file_and_test(m[1] or m[2]) for m in RAN.finditer(done.stdout)]


def _file_and_test(nodeid: str) -> str:
    """``test_torch.py::test_...[...]``: the test files lie outside the rootdir, which pytest's
    nodeids and its terminal lines then spell with different path prefixes."""
    return nodeid.rsplit("/", 1)[-1]


def _keyed(rows):
    return {tuple(r[f] for f in report.KEY): r for r in rows}


def test_three_slices_merged_are_one_run(tmp_path):
    whole = _pytest(tmp_path, "-p", "no:xdist", "--conformance-report=whole")
    ran = [
        # slice 2 through one xdist worker: the controller collects nothing and must learn
        # its slice from the worker
        _pytest(tmp_path, "--conformance-report=sliced", "--splits=3", f"--group={k}", *extra)
        for k, extra in ((1, ["-p", "no:xdist"]), (2, ["-n", "1"]), (3, ["-p", "no:xdist"]))
    ]
    reports = tmp_path / "reports"
    metas = [
        json.loads((reports / f"sliced.slice-{k}-of-3.json").read_text())["meta"] for k in (1, 2, 3)
    ]
    assert len(whole) == 4
    assert all(ran), "a slice ran nothing"
    assert sorted(n for part in ran for n in part) == sorted(whole)  # a partition
    assert [sorted(map(_file_and_test, m["items"])) for m in metas] == [sorted(p) for p in ran]
    assert {m["collected"] for m in metas} == {4}
    assert [m["group"] for m in metas] == [1, 2, 3]
    assert {m["profile"] for m in metas} == {"ci"}
    assert all(m["splits"] == 3 and m["devices"] == ["cpu"] for m in metas)
    assert all(m["commit"] and m["torch"] and m["name"] == "sliced" for m in metas)
    assert not (reports / "sliced.json").exists()  # a slice merges nothing by itself

    assert main(["report", "--dir", str(reports), "--name", "sliced"]) == 0
    one_run = _keyed(json.loads((reports / "whole.json").read_text()))
    merged = _keyed(json.loads((reports / "sliced.json").read_text()))
    assert merged.keys() == one_run.keys() and len(merged) == 4
    for key, row in one_run.items():
        assert {f: merged[key][f] for f in ("examples", "status", "max_ulp")} == {
            f: row[f] for f in ("examples", "status", "max_ulp")
        }, key
    assert all(r["examples"] > 0 and r["status"] == "pass" for r in merged.values())

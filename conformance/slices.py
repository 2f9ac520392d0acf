"""The conformance matrix in N slices, one per CI machine: ``--splits N --group K``.

Every machine collects the same items and must pick a disjoint share of them without talking to
the others, so the assignment is a pure function of (collected nodeids, ``durations.json``, N):
greedy longest-first onto the least-loaded slice, ties broken by nodeid and slice number, never
by collection order or by anything measured on the machine itself. Items the durations file does
not know (a new check, a new dtype) weigh the file's mean, so they spread out instead of piling
onto one slice.

``--store-durations`` refreshes the file from a run: setup + call + teardown per nodeid, as the
process that writes the report sees them (under xdist the controller gets every worker's reports
through ``pytest_runtest_logreport``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")
# weight of every item when there is no durations file (or an empty one): equal shares
_NO_DURATIONS_WEIGHT = 1.0


def validate(splits: int | None, group: int | None) -> None:
    """Refuse a slice that cannot exist, before any test runs on a machine that would run none."""
    if splits is None and group is None:
        return
    if splits is None or group is None:
        raise pytest.UsageError("--splits N and --group K go together (K in 1..N)")
    if splits < 1:
        raise pytest.UsageError(f"--splits must be at least 1, got {splits}")
    if not 1 <= group <= splits:
        raise pytest.UsageError(f"--group must be between 1 and --splits={splits}, got {group}")


def load_durations(path: Path = DURATIONS) -> dict[str, float]:
    """nodeid -> seconds; empty when the file is missing (every item then weighs the same)."""
    if not path.exists():
        return {}
    return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}


def weights(nodeids: Iterable[str], durations: dict[str, float]) -> dict[str, float]:
    """Each item's expected seconds: its stored duration, or the file's mean if unknown."""
    mean = sum(durations.values()) / len(durations) if durations else _NO_DURATIONS_WEIGHT
    return {n: durations.get(n, mean) for n in nodeids}


def assign(nodeids: Sequence[str], durations: dict[str, float], splits: int) -> list[list[str]]:
    """The N slices of ``nodeids``, each in the items' original order.

    Longest first onto the least-loaded slice (LPT): no slice ends more than the longest item
    above the mean load. Sorting by (-seconds, nodeid) and choosing the slice by (load, number)
    makes the result independent of the order pytest happened to collect in.
    """
    weight = weights(nodeids, durations)
    loads = [0.0] * splits
    slice_of: dict[str, int] = {}
    for nodeid in sorted(weight, key=lambda n: (-weight[n], n)):
        least = min(range(splits), key=lambda k: (loads[k], k))
        slice_of[nodeid] = least
        loads[least] += weight[nodeid]
    return [[n for n in nodeids if slice_of[n] == k] for k in range(splits)]


def select(items: list, splits: int, group: int, durations: dict[str, float]):
    """(kept, deselected) items for slice ``group`` (1-based) of ``splits``."""
    chosen = set(assign([i.nodeid for i in items], durations, splits)[group - 1])
    kept = [i for i in items if i.nodeid in chosen]
    return kept, [i for i in items if i.nodeid not in chosen]


class DurationRecorder:
    """Sums each item's phase durations and merges them into the durations file at the end.

    Merging (not replacing) keeps the entries of items this run did not collect, so a CPU run
    and a CUDA run, or a run restricted with ``-k``, each refresh only their own items.
    """

    def __init__(self, path: Path = DURATIONS):
        self.path = path
        self.seconds: dict[str, float] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report):
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def write(self) -> None:
        stored = load_durations(self.path)
        stored.update({n: round(s, 4) for n, s in self.seconds.items()})
        self.path.write_text(json.dumps(dict(sorted(stored.items())), indent=1) + "\n")


def _git(root: Path, *args: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def provenance(root: Path) -> dict:
    """Which code a slice ran: the commit ("unknown" outside a git checkout) and whether the
    working tree differed from it (then slices of "one commit" may not be one code)."""
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain") if commit else None
    return {"commit": commit or "unknown", "dirty": bool(status) if commit else None}


def profile_name() -> str:
    """The Hypothesis profile in effect (after ``--hypothesis-profile`` was applied)."""
    from hypothesis import settings

    getter = getattr(settings, "get_current_profile_name", None)
    return getter() if getter else settings._current_profile

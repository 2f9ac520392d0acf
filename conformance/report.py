"""Report rows: ``(subject, optimizer, check, dtype, device)`` -> examples run, the largest
error seen (ULPs, or the check's own ``measure``), status, reason. ``subject`` is the class
under test with its fixed kwargs (``impl.Adam``, ``torch.optim.adam.Adam(fused=True)``),
``optimizer`` the registry entry it claims.

Each process (an xdist worker, or the only process) keeps its rows in ``ROWS``. Workers hand
them to the controller through ``workeroutput``; the controller merges them and writes
``reports/NAME.json`` and ``reports/NAME.md`` (``conformance``, or ``audit`` for subjects other
than impl's own). Rows of devices not in this run
are kept from the existing JSON, so ``conformance(device='cpu')`` and
``conformance(device='cuda')`` run one after the other add up instead of overwriting each other.
"""

from __future__ import annotations

import json
from pathlib import Path

FIELDS = (
    "subject",
    "optimizer",
    "check",
    "contract",
    "dtype",
    "device",
    "examples",
    "max_ulp",
    "status",
    "reason",
)
KEY = ("subject", "optimizer", "check", "dtype", "device")
# What a row's number ("max_ulp") measures: ULPs (at scale, vs spec) unless named here; the
# kinds of the optimizers that are not elementwise have measures of their own
# (conformance.structured)
MEASURES = {
    "factored_moments": "u at scale",
    "singular_values": "σ error",
    "two_loop": "u at magnitude",
    "wolfe": "residual/allowance",
    "convergence": "|x−x*|/bound",
}


def measure(check: str) -> str:
    return MEASURES.get(check, "ULP")


ROWS: dict[tuple, dict] = {}


def row(target, check: str) -> dict:
    s = target.subject
    key = (s.label, target.entry.name, check, target.dtype, target.device)
    values = (s.label, target.entry.name, check, s.contract, target.dtype, target.device)
    return ROWS.setdefault(
        key,
        {
            **dict(zip(FIELDS, (*values, 0, None, "skip", "not run"), strict=True)),
            "measure": measure(check),
        },
    )


def example(target, check: str, ulp: float | None) -> None:
    """Count one example that ran to completion and fold in its largest ULP distance."""
    r = row(target, check)
    r["examples"] += 1
    if ulp is not None:
        r["max_ulp"] = ulp if r["max_ulp"] is None else max(r["max_ulp"], ulp)


def outcome(target, check: str, status: str, reason: str = "") -> None:
    r = row(target, check)
    # a failure (in any phase) is final; otherwise the latest phase wins
    if r["status"] != "fail" or status == "fail":
        r["status"], r["reason"] = status, reason


def merge(into: dict, rows: list[dict]) -> None:
    for r in rows:
        key = tuple(r[f] for f in KEY)
        old = into.get(key)
        if old is None:
            into[key] = dict(r)
            continue
        old["examples"] += r["examples"]
        if r["max_ulp"] is not None:
            old["max_ulp"] = (
                r["max_ulp"] if old["max_ulp"] is None else max(old["max_ulp"], r["max_ulp"])
            )
        if r["status"] == "fail" or old["status"] == "skip":
            old["status"], old["reason"] = r["status"], r["reason"]


def write(directory: Path, rows: dict, name: str = "conformance") -> list[dict]:
    """Merge with the rows of other devices already on disk; write NAME.json and NAME.md."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    devices = {r["device"] for r in rows.values()}
    kept = []
    if path.exists():
        try:
            kept = [r for r in json.loads(path.read_text()) if r["device"] not in devices]
        except (ValueError, KeyError, TypeError):
            kept = []
    table = sorted(kept + list(rows.values()), key=_order)
    path.write_text(json.dumps(table, indent=1) + "\n")
    (directory / f"{name}.md").write_text(markdown(table))
    return table


def _order(r):
    from conformance.registry import CHECK_DTYPES, COMPLEX_DTYPES, REAL_DTYPES, REGISTRY

    names = [e.name for e in REGISTRY]
    checks = list(CHECK_DTYPES)
    dtypes = list(REAL_DTYPES + COMPLEX_DTYPES)

    def pos(seq, x):
        return seq.index(x) if x in seq else len(seq)

    return (
        r["device"],
        r.get("subject", ""),
        pos(names, r["optimizer"]),
        pos(checks, r["check"]),
        pos(dtypes, r["dtype"]),
    )


def _fmt_ulp(x) -> str:
    if x is None:
        return "–"
    if x != x or x in (float("inf"), float("-inf")):  # NaN vs a number: infinitely far
        return str(x)
    return f"{x:.3g}" if x != int(x) else str(int(x))


def markdown(table: list[dict]) -> str:
    lines = [
        "| subject | optimizer | check | contract | dtype | device | examples | max | measure "
        "| status | reason |",
        "|---|---|---|---|---|---|---:|---:|---|---|---|",
    ]
    for r in table:
        reason = str(r["reason"]).replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(
            f"| {r.get('subject', '')} | {r['optimizer']} | {r['check']} | {r.get('contract', '')} "
            f"| {r['dtype']} | {r['device']} | {r['examples']} | {_fmt_ulp(r['max_ulp'])} "
            f"| {r.get('measure', measure(r['check']))} | {r['status']} | {reason} |"
        )
    counts = {s: sum(r["status"] == s for r in table) for s in ("pass", "fail", "skip")}
    lines.append("")
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines) + "\n"

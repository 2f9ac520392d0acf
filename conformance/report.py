"""Report rows: ``(subject, optimizer, check, dtype, device)`` -> examples run, the largest
error seen (ULPs, or the check's own ``measure``), status, reason, and the ``margin``: the
judgment that came closest to its allowance (``conformance.core.judge.Margin.as_dict``: measure,
allowance, their ratio, the analysis the allowance came from, whether it is mostly absolute
(underflow) terms), or None where no judgment recorded one. ``subject`` is the class under test
with its fixed kwargs (``impl.Adam``, ``torch.optim.adam.Adam(fused=True)``), ``optimizer`` the
registry entry it claims.

Each process (an xdist worker, or the only process) keeps its rows in ``ROWS``. Workers hand
them to the controller through ``workeroutput``; the controller merges them and writes
``reports/NAME.json`` and ``reports/NAME.md`` (``conformance``, or ``audit`` for subjects other
than impl's own). Rows of devices not in this run
are kept from the existing JSON, so ``conformance(device='cpu')`` and
``conformance(device='cuda')`` run one after the other add up instead of overwriting each other.

A sliced run (``--splits N --group K``, conformance.slices) writes
``reports/NAME.slice-K-of-N.json`` instead: ``{"meta": ..., "rows": [...]}``, the meta saying
which run the slice belongs to. ``python -m conformance report`` (``merge_slices``) checks that
the slices are one run's N groups and writes ``NAME.json``/``NAME.md`` from them as an unsliced
run would.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from conformance.checks import ALL_DTYPES, CHECKS
from conformance.registry import REGISTRY

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


def measure(check: str) -> str:
    """What a row's number ("max_ulp") counts: the check kind's measure (ULPs unless named)."""
    kind = CHECKS.get(check)
    return kind.measure if kind else "ULP"


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
            "margin": None,
        },
    )


def _ratio_key(margin: dict) -> tuple[float, float]:
    """Larger ratio is worse; at equal ratio (nothing measured) the tighter allowance."""
    return (float(margin["ratio"]), -float(margin["allowance"]))


def _fold_margin(r: dict, margin: dict | None) -> None:
    old = r.get("margin")
    if margin is not None and (old is None or _ratio_key(margin) > _ratio_key(old)):
        r["margin"] = dict(margin)


def margin(target, check: str, judged) -> None:
    """Fold one test item's worst judgment (a ``judge.Margin`` or None) into its row."""
    if judged is not None:
        _fold_margin(row(target, check), judged.as_dict())


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
        _fold_margin(old, r.get("margin"))
        if r["status"] == "fail" or old["status"] == "skip":
            old["status"], old["reason"] = r["status"], r["reason"]


def write(directory: Path, rows: dict, name: str = "conformance", lacks=()) -> list[dict]:
    """Merge with the rows of other devices already on disk; write NAME.json and NAME.md (with
    the capabilities the subjects lack, ``capability_lacks``, below the table)."""
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
    lines = lack_lines(lacks)
    (directory / f"{name}.md").write_text(markdown(table) + "".join(f"\n{x}" for x in lines))
    return table


# meta fields every slice of one run shares; a difference means the slices are not one run's
# (another commit, profile, split count, report, device set or -k selection)
SLICE_AGREEMENT = ("commit", "profile", "splits", "name", "devices", "collected")


class SliceError(ValueError):
    """The slice files on disk are not the N groups of one run; the message names the files."""


def slice_path(directory: Path, name: str, group: int, splits: int) -> Path:
    return directory / f"{name}.slice-{group}-of-{splits}.json"


def write_slice(directory: Path, rows: dict, meta: dict) -> list[dict]:
    """One slice's rows, without merging anything on disk: the merge waits for every slice."""
    directory.mkdir(parents=True, exist_ok=True)
    path = slice_path(directory, meta["name"], meta["group"], meta["splits"])
    table = sorted(rows.values(), key=_order)
    path.write_text(json.dumps({"meta": meta, "rows": table}, indent=1) + "\n")
    return table


def _slice_files(directory: Path, name: str) -> list[tuple[Path, dict]]:
    pattern = re.compile(rf"{re.escape(name)}\.slice-(\d+)-of-(\d+)\.json")
    numbered = {p: pattern.fullmatch(p.name) for p in directory.glob(f"{name}.slice-*-of-*.json")}
    # by (N, K), not by name: slice-10 after slice-9, and the same file first every time
    paths = sorted((p for p, m in numbered.items() if m), key=lambda p: _numbers(numbered[p]))
    if not paths:
        raise SliceError(f"no slice files {directory}/{name}.slice-K-of-N.json")
    return [(p, _read_slice(p)) for p in paths]


def _read_slice(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if {"group", "splits"} <= set(data["meta"]) and isinstance(data["rows"], list):
            return data
    except (ValueError, KeyError, TypeError):
        pass
    raise SliceError(f"{path.name} is not a slice report ({{'meta': ..., 'rows': [...]}})")


def _numbers(match: re.Match) -> tuple[int, int]:
    return int(match[2]), int(match[1])


def _check_one_run(slices: list[tuple[Path, dict]]) -> None:
    """Refuse slices of different runs, a group twice, a group missing, or an item twice."""
    first_path, first = slices[0]
    for path, data in slices[1:]:
        for field in SLICE_AGREEMENT:
            if data["meta"].get(field) != first["meta"].get(field):
                raise SliceError(
                    f"{first_path.name} and {path.name} differ in {field}: "
                    f"{first['meta'].get(field)!r} vs {data['meta'].get(field)!r}"
                )
    seen: dict[int, Path] = {}
    for path, data in slices:
        if (group := data["meta"]["group"]) in seen:
            raise SliceError(f"{seen[group].name} and {path.name} are both group {group}")
        seen[group] = path
    splits = first["meta"]["splits"]
    if missing := sorted(set(range(1, splits + 1)) - set(seen)):
        raise SliceError(
            f"missing group(s) {', '.join(map(str, missing))} of {splits}: "
            f"have {', '.join(p.name for p, _ in slices)}"
        )
    owner: dict[str, Path] = {}
    for path, data in slices:
        for item in data["meta"].get("items", []):
            if item in owner:
                raise SliceError(f"{owner[item].name} and {path.name} both ran {item}")
            owner[item] = path
    if (collected := first["meta"].get("collected")) is not None and len(owner) != collected:
        raise SliceError(
            f"the slices ran {len(owner)} items of the {collected} each collected "
            f"(assigned differently: another durations.json?)"
        )


def merge_slices(directory: Path, name: str = "conformance") -> list[dict]:
    """Merge every ``NAME.slice-K-of-N.json`` under ``directory`` into ``NAME.{json,md}``, as
    ``write`` does for an unsliced run (rows of other devices on disk kept). Raises SliceError."""
    slices = _slice_files(directory, name)
    _check_one_run(slices)
    merged: dict = {}
    for _, data in slices:
        merge(merged, data["rows"])
    return write(directory, merged, name)


def _order(r):
    names = [e.name for e in REGISTRY]
    checks = list(CHECKS)
    dtypes = list(ALL_DTYPES)

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


def fmt_margin(margin: dict | None) -> str:
    """``measure of allowance = ratio``; ``0 of 0`` for a bitwise judgment; the flag where the
    allowance there is mostly absolute (underflow) terms; ``–`` where nothing recorded one."""
    if margin is None:
        return "–"
    m, a, ratio = margin["measure"], margin["allowance"], margin["ratio"]
    text = f"{_fmt_ulp(m)} of {_fmt_ulp(a)}"
    if not (m == 0 and a == 0):
        text += f" = {_fmt_ulp(float(f'{ratio:.2g}') if math.isfinite(ratio) else ratio)}"
    return text + (", mostly absolute terms" if margin.get("mostly_absolute") else "")


def markdown(table: list[dict]) -> str:
    lines = [
        "| subject | optimizer | check | contract | dtype | device | examples | max | measure "
        "| margin (measure of allowance = ratio) | allowance from | status | reason |",
        "|---|---|---|---|---|---|---:|---:|---|---|---|---|---|",
    ]
    for r in table:
        reason = str(r["reason"]).replace("|", "\\|").replace("\n", " ")[:160]
        margin = r.get("margin")
        lines.append(
            f"| {r.get('subject', '')} | {r['optimizer']} | {r['check']} | {r.get('contract', '')} "
            f"| {r['dtype']} | {r['device']} | {r['examples']} | {_fmt_ulp(r['max_ulp'])} "
            f"| {r.get('measure', measure(r['check']))} | {fmt_margin(margin)} "
            f"| {margin['source'] if margin else '–'} | {r['status']} | {reason} |"
        )
    counts = {s: sum(r["status"] == s for r in table) for s in ("pass", "fail", "skip")}
    lines.append("")
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines) + "\n"


# -- the terminal summary: optimizer x check kind, one screen ---------------------------------
_ABBREVIATIONS = {
    "spec_trajectory": "traj",
    "complex_as_real": "cplx",
    "nesterov_lookahead": "nest",
    "maximize": "max",
    "state_dict_roundtrip": "sd",
    "grad_untouched": "grad",
    "deterministic": "det",
    "errors": "err",
    "memory_safety": "mem",
    "sparse_rows": "rows",
    "distributed": "dist",
    "factored_moments": "fact",
    "singular_values": "sval",
    "scale_invariance": "scal",
    "two_loop": "2lp",
    "wolfe": "wolf",
    "convergence": "conv",
}


def _abbreviation(check: str) -> str:
    return _ABBREVIATIONS.get(check, check)


def _cell(rows: list[dict]) -> str:
    """A kind's rows of one optimizer: passes, then ``xN`` failures and ``sN`` skips."""
    if not rows:
        return "·"
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "skip")}
    text = str(counts["pass"]) if counts["pass"] else ""
    text += f"x{counts['fail']}" if counts["fail"] else ""
    text += f"s{counts['skip']}" if counts["skip"] else ""
    return text


def worst_by_ratio(rows: list[dict]) -> dict | None:
    """The row that came closest to its allowance (largest margin ratio), skips left out; rows
    that recorded no margin are not ranked (a raw maximum says nothing of its allowance)."""
    judged = [r for r in rows if r.get("margin") and r["status"] != "skip"]
    return max(judged, key=lambda r: _ratio_key(r["margin"]), default=None)


def _label(row: dict, subjects_of: dict[str, set]) -> str:
    """The optimizer, and the subject too where several subjects claim it (torch's paths)."""
    name = row["optimizer"]
    return name if len(subjects_of[name]) == 1 else f"{name} {row.get('subject', '')}"


def _grid(rows: list[dict]) -> list[str]:
    kinds = [k for k in CHECKS if any(r["check"] == k for r in rows)]
    kinds += sorted({r["check"] for r in rows} - set(kinds))
    subjects_of: dict[str, set] = {}
    for r in rows:
        subjects_of.setdefault(r["optimizer"], set()).add(r.get("subject", ""))
    by_label = _groups(rows, ("label",), label=lambda r: _label(r, subjects_of))
    cells = {
        label: [_cell([r for r in group if r["check"] == k]) for k in kinds]
        for (label,), group in by_label.items()
    }
    widths = [
        max(len(_abbreviation(k)), *(len(c[j]) for c in cells.values()))
        for j, k in enumerate(kinds)
    ]
    first = max(len(label) for label in cells)
    lines = [" " * first + "".join(f" {_abbreviation(k):>{w}}" for k, w in zip(kinds, widths))]
    for label, row in cells.items():
        lines.append(f"{label:<{first}}" + "".join(f" {c:>{w}}" for c, w in zip(row, widths)))
    lines.append(
        "worst measure per kind, by ratio to its allowance (measure of allowance = ratio):"
    )
    for k in kinds:
        worst = worst_by_ratio([r for r in rows if r["check"] == k])
        name = k if _abbreviation(k) == k else f"{_abbreviation(k)} = {k}"
        if worst is None:
            lines.append(f"  {name}: no allowance recorded")
            continue
        m = worst["margin"]
        lines.append(
            f"  {name}: {fmt_margin(m)} {worst.get('measure', measure(k))}, {m['source']} "
            f"({_label(worst, subjects_of)} {worst['dtype']}; max {_fmt_ulp(worst['max_ulp'])})"
        )
    return lines


def summary(table: list[dict], where: list[str]) -> str:
    """What a terminal shows of a run: the counts; per device an optimizer x check kind grid
    (passing rows per cell, ``xN`` failing, ``sN`` skipped, ``·`` not applicable) and each
    kind's worst measure and where; every failing row; the paths of the full reports."""
    counts = {s: sum(r["status"] == s for r in table) for s in ("pass", "fail", "skip")}
    examples = sum(r["examples"] for r in table)
    lines = [
        f"{len(table)} rows: {counts['pass']} pass, {counts['fail']} fail, {counts['skip']} skip; "
        f"{examples:,} Hypothesis examples"
    ]
    for (device,), rows in _groups(table, ("device",)).items():
        lines += ["", f"on {device} (cells: passing rows, xN failing, sN skipped, · not run):"]
        lines += _grid(rows)
    failed = [r for r in table if r["status"] == "fail"]
    if failed:
        lines += ["", "failing rows (each failure above explains itself in full):"]
        lines += [f"  {_row_id(r)}: {r['reason']}" for r in failed]
    if where:
        lines += ["", "full report: " + ", ".join(where)]
    return "\n".join(lines) + "\n"


def _groups(rows: list[dict], keys: tuple[str, ...], **derived) -> dict[tuple, list[dict]]:
    """Rows by the values of ``keys`` (a row's field, or ``derived[key](row)``), in order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        key = tuple(derived[k](r) if k in derived else r.get(k, "") for k in keys)
        out.setdefault(key, []).append(r)
    return out


def _row_id(r: dict) -> str:
    return f"{r.get('subject', '')} as {r['optimizer']}: {r['check']} {r['dtype']} {r['device']}"


def undeclared_refusals(table: list[dict], prefix: str, lacks=()) -> list[dict]:
    """Skipped rows that ran no example because the subject refused their dtype (or the
    capability that is their point) on its own, and the capabilities a subject was found to
    refuse (``capability_lacks``): neither the registry, the suite nor the user (``--dtypes``,
    ``--without``) declared those lacks."""
    rows = [r for r in table if r["status"] == "skip" and str(r["reason"]).startswith(prefix)]
    found = [
        {
            "optimizer": f"{x['subject']} as {x['optimizer']}",
            "check": "lacks",
            "dtype": x["capability"],
            "reason": x["reason"],
        }
        for x in lacks
        if not x["declared"]
    ]
    return rows + found


def capability_lacks(subjects, table: list[dict]) -> list[dict]:
    """The capabilities each subject with rows in ``table`` lacks (``conformance.subject``):
    ``declared`` says by whom (None: found by trying, which fails the run), ``reason`` quotes
    the subject's refusal where it was tried."""
    ran = {(r.get("subject", ""), r["optimizer"]) for r in table}
    return [
        {
            "subject": s.label,
            "optimizer": s.entry.name,
            "capability": capability,
            "declared": s.declared(capability),
            "reason": s.found.get(capability, ""),
        }
        for s in subjects
        if (s.label, s.entry.name) in ran
        for capability in sorted(s.lacking)
    ]


def lack_lines(lacks) -> list[str]:
    """The summary's lines on capabilities: which each subject lacks, declared by whom."""
    if not lacks:
        return []
    lines = ["capabilities lacking (cases drawn without them; rows about them skipped):"]
    for x in lacks:
        who = x["declared"] or "found by trying, undeclared"
        why = f": {x['reason']}" if x["reason"] and not x["declared"] else ""
        lines.append(f"- {x['subject']} as {x['optimizer']}: {x['capability']}, {who}{why}")
    return lines


# -- the docs' measured tables: regenerated from a report, between markers ---------------------
# ``<!-- measured:NAME:begin -->`` ... ``<!-- measured:NAME:end -->`` in a Markdown file: NAME is
# one of ``MEASURED_BLOCKS``; ``python -m conformance measured`` rewrites what lies between.
MARKER = re.compile(r"(<!-- measured:([\w-]+):begin -->\n).*?(<!-- measured:\2:end -->)", re.S)
STRUCTURED_CHECKS = (
    "factored_moments",
    "singular_values",
    "scale_invariance",
    "two_loop",
    "wolfe",
    "convergence",
)
_SHORT = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
_SHORT |= {"complex64": "c64", "complex128": "c128"}


def _cell_text(rows: list[dict]) -> str:
    """The worst of a cell's rows: ``max (ratio)``, ``bitwise`` for 0 of 0, ``*`` where the
    allowance there is mostly absolute terms, ``✕`` on a failure, ``–`` where nothing ran."""
    ran = [r for r in rows if r["status"] != "skip"]
    if not ran:
        return "–"
    fail = "✕ " if any(r["status"] == "fail" for r in ran) else ""
    raw = max((float(r["max_ulp"]) for r in ran if r["max_ulp"] is not None), default=None)
    worst = worst_by_ratio(ran)
    if worst is None:
        return fail + _fmt_ulp(raw)
    m = worst["margin"]
    if m["measure"] == 0 and m["allowance"] == 0 and not raw:
        return fail + "bitwise"
    ratio = m["ratio"]
    shown = _fmt_ulp(float(f"{ratio:.2g}") if math.isfinite(ratio) else ratio)
    return f"{fail}{_fmt_ulp(raw)} ({shown}{'*' if m.get('mostly_absolute') else ''})"


def _pivot(rows: list[dict], label, columns: list[tuple[str, str]]) -> list[str]:
    """One Markdown row per label (in the rows' order), one cell per (check, dtype) column."""
    by = _groups(rows, ("label",), label=label)
    lines = []
    for (name,), group in by.items():
        cells = [_cell_text([r for r in group if (r["check"], r["dtype"]) == c]) for c in columns]
        if any(c != "–" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _spec_block(table: list[dict], head: str) -> str:
    spec = [r for r in table if r["check"] in ("spec", "spec_trajectory")]
    dtypes = [d for d in ALL_DTYPES if any(r["dtype"] == d for r in spec if r["check"] == "spec")]
    columns = [("spec", d) for d in dtypes] + [("spec_trajectory", "float64")]
    torch_rows = [r for r in table if r["check"] == "torch" and r["max_ulp"] is not None]
    vs_torch = max((float(r["max_ulp"]) for r in torch_rows), default=None)
    torch_line = (
        f"vs torch: at most {_fmt_ulp(vs_torch)} ULP over {len(torch_rows)} rows."
        if torch_rows
        else "vs torch: no rows in this report."
    )
    lines = [
        head,
        f"{torch_line} vs the exact "
        "spec, per entry and dtype: the largest error in ULPs at scale, and in brackets the "
        "largest ratio of an error to the allowance it was judged against (the row's margin; "
        "`*`: the allowance there is mostly absolute terms, see "
        "[bounds.md](bounds.md#why-some-raw-maxima-are-huge)); the last column is "
        "`spec_trajectory` (every step of 2–8 judged as a one-step check):",
        "",
        "| entry | " + " | ".join(_SHORT[d] for d in dtypes) + " | trajectory f64 |",
        "|---|" + "---|" * len(columns),
        *_pivot(spec, lambda r: r["optimizer"], columns),
    ]
    return "\n".join(lines) + "\n"


def _structured_block(table: list[dict], head: str) -> str:
    rows = [r for r in table if r["check"] in STRUCTURED_CHECKS]
    dtypes = [d for d in ALL_DTYPES if any(r["dtype"] == d for r in rows)]
    lines = [
        head,
        "The largest measure per dtype, and in brackets its largest ratio to its allowance "
        "where the check judges through an allowance:",
        "",
        "| check | measure | " + " | ".join(_SHORT[d] for d in dtypes) + " |",
        "|---|---|" + "---|" * len(dtypes),
    ]
    for kind in STRUCTURED_CHECKS:
        mine = [r for r in rows if r["check"] == kind]
        unit = measure(kind).replace("|", "\\|")  # a table cell: |x−x*| would split it
        lines += [
            line.replace(" | ", f" | {unit} | ", 1)
            for line in _pivot(
                mine, lambda r: f"{r['optimizer']} `{r['check']}`", [(kind, d) for d in dtypes]
            )
        ]
    return "\n".join(lines) + "\n"


MEASURED_BLOCKS = {"spec": _spec_block, "structured": _structured_block}


def measured_blocks(
    table: list[dict], date: str, command: str, source: str = "reports/conformance.json"
) -> dict[str, str]:
    """Each docs block's Markdown, from one report's rows (``source``, the file they came from)."""
    head = (
        f"Measured {date} with `{command}` (the `ci` profile); this block is written by "
        f"`python -m conformance measured` from `{source}`."
    )
    return {name: build(table, head) for name, build in MEASURED_BLOCKS.items()}


def rewrite_measured(path: Path, blocks: dict[str, str]) -> list[str]:
    """Replace what lies between each ``measured:NAME`` marker pair in ``path``; returns the
    names rewritten. An unknown NAME is refused (a typo would leave stale numbers)."""
    text = path.read_text()
    names = [m[2] for m in MARKER.finditer(text)]
    if unknown := [n for n in names if n not in blocks]:
        raise ValueError(f"{path}: unknown measured block {unknown[0]!r}; known: {list(blocks)}")
    path.write_text(MARKER.sub(lambda m: m[1] + blocks[m[2]] + m[3], text))
    return names

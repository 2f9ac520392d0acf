"""``python -m plots [--out reports] [--report PATH] [--report-only] [--docs-img PATH]``.

Writes the seed figures (``plots.seed``) and, when the report exists, its heat-table
(``plots.heat``) as ``OUT/<report name>_heat.png``: ``conformance_heat.png``, ``audit_heat.png``.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from plots import heat, seed


def write_heat(report: Path, out: Path) -> Path | None:
    """The report's heat-table under ``out``, or None (with a note) when there is no report."""
    rows = heat.load_report(report)
    if rows is None:
        print(f"plots: no {report}; skipping the conformance heat-table (run the harness first)")
        return None
    path = out / f"{report.stem}_heat.png"
    return heat.plot_conformance_heat(heat.heat_table(rows), path, title=report.name)


def write_all(
    out: Path, report: Path | None = None, dtype=seed.DTYPE, with_seed: bool = True
) -> list[Path]:
    """Every figure under ``out`` (``with_seed=False``: only the report's heat-table)."""
    out = Path(out)
    written = seed.write_figures(out, dtype) if with_seed else []
    report = out / "conformance.json" if report is None else Path(report)
    heat_png = write_heat(report, out)
    return written if heat_png is None else [*written, heat_png]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m plots", description="The seed's experiment and the conformance report."
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    parser.add_argument(
        "--report", type=Path, help="conformance JSON (default: OUT/conformance.json)"
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--report-only", action="store_true", help="only the report's heat-table")
    parser.add_argument("--docs-img", type=Path, help="also copy seed_corrected.png here (README)")
    args = parser.parse_args(argv)
    if args.docs_img and args.report_only:
        parser.error("--docs-img copies the seed figure, which --report-only does not draw")
    written = write_all(args.out, args.report, getattr(torch, args.dtype), not args.report_only)
    if args.docs_img:
        args.docs_img.parent.mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copyfile(written[0], args.docs_img)))
    for path in written:
        print(f"plots: wrote {path}")
